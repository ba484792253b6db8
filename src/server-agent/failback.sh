#!/bin/sh
# PID 1 of the recovery environment Haven builds for a failback onto a
# physical server (recovery-environment.ts). It writes what the server's disk
# must become, read from the failback export at the primary site, onto the
# server's own md member, then reboots the server into its own system.
# Files (the per-failback archive appended to the initramfs):
#   /etc/haven/failback.conf     one setting a line:
#     export <address> <port> <name> <tls hostname>
#     device <the server's disk, an md member, e.g. /dev/vda>
#     array <the md array to assemble from it, e.g. /dev/md0>
#     network dhcp | network static <address/prefix> [<gateway>]
#     then reboot|poweroff
#   /etc/haven/failback.ranges   "<offset> <length>" in bytes, one range a
#                                line: what diverged since the server stopped
#   /etc/haven/failback-tls/{ca,cert,key}.pem  the export's CA, the client
#                                certificate and its key
# Console lines:
#   failback: connected <address>:<port>/<name> over TLS
#   failback: assembled <array> from <device> alone (its own member authoritative)
#   failback: bitmap dirty <d> of <n> chunks of <bytes> bytes
#   failback: copying <bytes> in <k> ranges
#   failback: copied <bytes> of <bytes>       about once a second, and at the end
#   failback: done <bytes> in <ms> ms
#   failback: failed: <why>                   nothing more is written; the
#                                             server powers off, its disk
#                                             holding a partial copy (run again)
# The copy goes through md, never to the member directly: md's bitmap records
# every chunk written while the remote leg is missing, so the leg's re-add
# later resends exactly them. Copying a range twice writes the same bytes, so
# an interrupted failback is simply run again.
export PATH=/bin
CONF=/etc/haven/failback.conf
RANGES=/etc/haven/failback.ranges
TLS_DIR=/etc/haven/failback-tls
NBD=/dev/nbd0

# udhcpc runs this script with the event as $1 (never so for PID 1).
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    exit 0
    ;;
  bound | renew)
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface" && break; done
    exit 0
    ;;
  leasefail | nak) exit 0 ;;
esac

mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /run

then=poweroff
finish() {
  sync
  if [ "$then" = reboot ]; then reboot -f; else poweroff -f; fi
  while true; do sleep 3600; done
}
fail() {
  echo "failback: failed: $*"
  then=poweroff
  finish
}

# Milliseconds since boot into $ms (10 ms steps); the fraction loses its
# leading zero first, or ash reads "08" as a bad octal number.
uptime_ms() {
  read -r up _ </proc/uptime
  frac=${up#*.}
  ms=$((${up%.*} * 1000 + (1$frac - 100) * 10))
}

while read -r key a b c d; do
  case "$key" in
    export) address=$a port=$b name=$c tls_host=$d ;;
    device) device=$a ;;
    array) array=$a ;;
    network) network=$a net_address=$b net_gateway=$c ;;
    then) then=$a ;;
  esac
done <"$CONF"
[ -n "$address" ] && [ -n "$device" ] && [ -n "$array" ] || fail "$CONF lacks the export, device or array"

while read -r module; do
  insmod "/lib/modules/$module" || echo "failback: insmod $module failed"
done </lib/modules/load-order

i=0
while { [ ! -b "$device" ] || [ ! -e /sys/class/net/eth0 ]; } && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b "$device" ] || fail "no disk $device"
[ -e /sys/class/net/eth0 ] || fail "no network interface eth0"
ip link set lo up
ip link set eth0 up
if [ "$network" = static ]; then
  ip addr add "$net_address" dev eth0 || fail "cannot set address $net_address"
  [ -n "$net_gateway" ] && ip route add default via "$net_gateway"
else
  udhcpc -i eth0 -s /init -q -n -t 10 >/run/udhcpc.log 2>&1 || fail "no DHCP lease on eth0"
fi

timeout 30 nbd-client "$address" "$port" "$NBD" -N "$name" -timeout 30 \
  -cacertfile "$TLS_DIR/ca.pem" -certfile "$TLS_DIR/cert.pem" -keyfile "$TLS_DIR/key.pem" \
  -tlshostname "$tls_host" >/run/nbd-client.log 2>&1 ||
  fail "cannot connect $address:$port/$name: $(tail -n 1 /run/nbd-client.log)"
echo "failback: connected $address:$port/$name over TLS"

# Reads a little-endian integer of the device (od type u4, d4 or u8) at a byte offset.
int_at() {
  od -An -t"$1" -j "$2" -N "${1#?}" "$device" | tr -d ' '
}

# The chunks md's write-intent bitmap marks dirty on the local member: writes
# in flight at the power loss, or made while the remote leg was away, which
# the replica (and so the failback export) may not hold. Metadata 1.0: the
# superblock sits 8 to 12 KiB before the end, the bitmap at a signed sector
# offset from it, its bits after its 256-byte header. Read before md
# assembles, as the power loss left them. mdadm -X counts the same bits.
bitmap_ranges() {
  sectors=$(blockdev --getsz "$device")
  sb=$((((sectors - 16) & ~7) * 512))
  [ "$(int_at u4 "$sb")" = 2838187772 ] || fail "$device holds no md metadata 1.0 superblock"
  if [ $(($(int_at u4 $((sb + 8))) & 1)) = 0 ]; then
    echo "failback: bitmap none"
    return
  fi
  bitmap_offset=$(int_at d4 $((sb + 96)))
  bm=$((sb + bitmap_offset * 512))
  magic=$(int_at u4 "$bm")
  [ "$magic" = 1836345698 ] ||
    fail "no md bitmap at byte $bm of $device (superblock at $sb, bitmap offset $bitmap_offset sectors, magic $magic)"
  chunk=$(int_at u4 $((bm + 52)))
  sync_sectors=$(int_at u8 $((bm + 40)))
  bits=$(((sync_sectors * 512 + chunk - 1) / chunk))
  od -An -tu1 -v -j $((bm + 256)) -N $(((bits + 7) / 8)) "$device" |
    awk -v chunk="$chunk" -v bits="$bits" '
      { for (f = 1; f <= NF; f++) { v = $f; for (b = 0; b < 8; b++) { if (i < bits && v % 2) print i * chunk, chunk; v = int(v / 2); i++ } } }
    ' >/run/bitmap.ranges
  dirty=$(awk 'END { print NR }' /run/bitmap.ranges)
  counted=$(mdadm -X "$device" 2>/dev/null | awk '/Bitmap :/ { print $6 }')
  [ "$dirty" = "$counted" ] || fail "read $dirty dirty bitmap chunks on $device, mdadm -X counts ${counted:-none}"
  echo "failback: bitmap dirty $dirty of $bits chunks of $chunk bytes"
}
: >/run/bitmap.ranges
bitmap_ranges

# Its own member alone: md bumps its event count, so the stale remote leg can
# only come back as a member recovering from this one.
mdadm --assemble "$array" --run "$device" </dev/null >/run/mdadm.log 2>&1 ||
  fail "cannot assemble $array from $device: $(tail -n 1 /run/mdadm.log)"
i=0
while [ ! -b "$array" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
echo "failback: assembled $array from $device alone (its own member authoritative)"

# Both lists, sorted and merged, clipped to the array: md's own metadata
# past its end stays the server's.
limit=$(blockdev --getsize64 "$array")
cat "$RANGES" /run/bitmap.ranges | sort -n | awk -v limit="$limit" '
  NF == 2 {
    s = $1; e = $1 + $2; if (e > limit) e = limit; if (s >= e) next
    if (n && s <= end) { if (e > end) end = e; next }
    if (n) print start, end - start
    start = s; end = e; n++
  }
  END { if (n) print start, end - start }
' >/run/copy.ranges
total=$(awk '{ t += $2 } END { printf "%d", t }' /run/copy.ranges)
count=$(awk 'END { print NR }' /run/copy.ranges)
echo "failback: copying $total in $count ranges"

uptime_ms
started=$ms
shown=$ms
copied=0
while read -r offset length; do
  dd if="$NBD" of="$array" bs=1M iflag=skip_bytes,count_bytes,fullblock oflag=seek_bytes conv=notrunc \
    skip="$offset" seek="$offset" count="$length" 2>/run/dd.log ||
    fail "copying $length bytes at $offset: $(tail -n 1 /run/dd.log)"
  copied=$((copied + length))
  uptime_ms
  if [ $((ms - shown)) -ge 1000 ]; then
    echo "failback: copied $copied of $total"
    shown=$ms
  fi
done </run/copy.ranges
sync
blockdev --flushbufs "$array"
uptime_ms
echo "failback: copied $copied of $total"
mdadm --stop "$array" </dev/null >/run/mdadm.log 2>&1 || fail "cannot stop $array: $(tail -n 1 /run/mdadm.log)"
nbd-client -d "$NBD" >/dev/null 2>&1
echo "failback: done $copied in $((ms - started)) ms"
finish
