#!/bin/sh
# PID 1 of the recovery environment Haven builds for a failback onto a
# physical server (recovery-environment.ts). It writes what the server's disks
# must become, read from the failback exports at the primary site, onto the
# server's own md members, then reboots the server into its own system.
# Files (the per-failback archive appended to the initramfs):
#   /etc/haven/failback.conf     one setting a line:
#     export <address> <port> <tls hostname>
#     identity <machine id> <state dir, e.g. /etc/haven>   (optional) the TLS
#                     files and the host's agent address are the server's own,
#                     read from its system partition; without it they are
#                     the embedded ones below and nothing is reported
#     disk <device, an md member, e.g. /dev/vda> <the md array to assemble from
#          it, e.g. /dev/md0> <export name> <ranges file>     (one a disk)
#     network dhcp | network static <address/prefix> [<gateway>]
#     then reboot|poweroff
#   ranges files: "<offset> <length>" in bytes, one range a line: what
#                 diverged since the server stopped
#   /etc/haven/failback-tls/{ca,cert,key}.pem  the export's CA, the client
#                 certificate and its key (without identity)
# Console lines:
#   failback: identity <machine id> from <partition>
#   failback: connected <address>:<port>/<name> over TLS
#   failback: assembled <array> from <device> alone (its own member authoritative)
#   failback: bitmap dirty <d> of <n> chunks of <bytes> bytes
#   failback: copying <bytes> in <k> ranges
#   failback: copied <bytes> of <bytes>       about once a second, and at the end
#   failback: done <bytes> in <ms> ms
#   failback: failed: <why>                   nothing more is written; the
#                                             server powers off, its disk
#                                             holding a partial copy (run again)
# With identity, the host's agent endpoint hears "failback copying|done|failed"
# reports (haven-server-agent failback-report) under the server's certificate.
# The copy goes through md, never to the member directly: md's bitmap records
# every chunk written while the remote leg is missing, so the leg's re-add
# later resends exactly them. Copying a range twice writes the same bytes, so
# an interrupted failback is simply run again.
export PATH=/bin
CONF=/etc/haven/failback.conf
TLS_DIR=/etc/haven/failback-tls
STATE=/run/haven-state

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
copied=0
total=0
elapsed=0
finish() {
  sync
  if [ "$then" = reboot ]; then reboot -f; else poweroff -f; fi
  while true; do sleep 3600; done
}
# report PHASE [WHY]: to the host's agent endpoint, when the server's identity was found.
report() {
  [ -n "$reporting" ] || return 0
  sh /bin/haven-server-agent failback-report --state-dir "$STATE" "$1" "$copied" "$total" "$elapsed" ${2:+"$2"} \
    </dev/null >/run/report.log 2>&1 ||
    echo "failback: report failed: $(tail -n 1 /run/report.log)"
}
fail() {
  echo "failback: failed: $*"
  report failed "$*"
  then=poweroff
  finish
}

# Milliseconds since boot (10 ms steps) into $ms; the fraction loses its
# leading zero first, or ash reads "08" as a bad octal number.
uptime_ms() {
  read -r up _ </proc/uptime
  frac=${up#*.}
  ms=$((${up%.*} * 1000 + (1$frac - 100) * 10))
}

: >/run/disks
while read -r key a b c d; do
  case "$key" in
    export) address=$a port=$b tls_host=$c ;;
    identity) machine=$a state_dir=$b ;;
    disk) echo "$a $b $c $d" >>/run/disks ;;
    network) network=$a net_address=$b net_gateway=$c ;;
    then) then=$a ;;
  esac
done <"$CONF"
[ -n "$address" ] && [ -s /run/disks ] || fail "$CONF lacks the export or a disk"

while read -r module; do
  insmod "/lib/modules/$module" || echo "failback: insmod $module failed"
done </lib/modules/load-order

disks_present() {
  while read -r device _; do [ -b "$device" ] || return 1; done </run/disks
}
i=0
until { disks_present && [ -e /sys/class/net/eth0 ]; } || [ $i -ge 100 ]; do
  sleep 0.1
  i=$((i + 1))
done
while read -r device _; do [ -b "$device" ] || fail "no disk $device"; done </run/disks
[ -e /sys/class/net/eth0 ] || fail "no network interface eth0"

# The server's own identity: its agent's state dir on a partition of one of
# its disks, read-only without replaying a journal (the member must only be
# written through md), copied out so the partition is let go before md
# opens the disk.
find_identity() {
  mkdir -p /mnt "$STATE"
  while read -r device _; do
    for part in "$device" "$device"[0-9]* "$device"p[0-9]*; do
      [ -b "$part" ] || continue
      mount -o ro,noload "$part" /mnt 2>/dev/null || mount -o ro "$part" /mnt 2>/dev/null || continue
      if grep -qx "machine $machine" "/mnt$state_dir/server.conf" 2>/dev/null &&
        [ -r "/mnt$state_dir/tls/key.pem" ]; then
        cp -a "/mnt$state_dir/." "$STATE/"
        umount /mnt
        echo "failback: identity $machine from $part"
        return 0
      fi
      umount /mnt
    done
  done </run/disks
  return 1
}
if [ -n "$machine" ]; then
  find_identity || fail "no partition of the server's disks holds $state_dir/server.conf of machine $machine"
  TLS_DIR=$STATE/tls
  reporting=1
fi

ip link set lo up
ip link set eth0 up
if [ "$network" = static ]; then
  ip addr add "$net_address" dev eth0 || fail "cannot set address $net_address"
  [ -n "$net_gateway" ] && ip route add default via "$net_gateway"
else
  udhcpc -i eth0 -s /init -q -n -t 10 >/run/udhcpc.log 2>&1 || fail "no DHCP lease on eth0"
fi

# Reads a little-endian integer of $device (od type u4, d4 or u8) at a byte offset.
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
  : >"$1"
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
    ' >"$1"
  dirty=$(awk 'END { print NR }' "$1")
  counted=$(mdadm -X "$device" </dev/null 2>/dev/null | awk '/Bitmap :/ { print $6 }')
  [ "$dirty" = "$counted" ] || fail "read $dirty dirty bitmap chunks on $device, mdadm -X counts ${counted:-none}"
  echo "failback: bitmap dirty $dirty of $bits chunks of $chunk bytes"
}

# Each disk: its export connected, md's dirty chunks read, its own member
# assembled alone (md bumps its event count, so the stale remote leg can
# only come back as a member recovering from this one), and the ranges to
# copy: both lists, sorted and merged, clipped to the array (md's own
# metadata past its end stays the server's).
n=0
while read -r device array name ranges; do
  timeout 30 nbd-client "$address" "$port" "/dev/nbd$n" -N "$name" -timeout 30 \
    -cacertfile "$TLS_DIR/ca.pem" -certfile "$TLS_DIR/cert.pem" -keyfile "$TLS_DIR/key.pem" \
    -tlshostname "$tls_host" </dev/null >/run/nbd-client.log 2>&1 ||
    fail "cannot connect $address:$port/$name: $(tail -n 1 /run/nbd-client.log)"
  echo "failback: connected $address:$port/$name over TLS"
  bitmap_ranges "/run/bitmap.$n.ranges"
  mdadm --assemble "$array" --run "$device" </dev/null >/run/mdadm.log 2>&1 ||
    fail "cannot assemble $array from $device: $(tail -n 1 /run/mdadm.log)"
  i=0
  while [ ! -b "$array" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  echo "failback: assembled $array from $device alone (its own member authoritative)"
  limit=$(blockdev --getsize64 "$array")
  cat "$ranges" "/run/bitmap.$n.ranges" | sort -n | awk -v limit="$limit" '
    NF == 2 {
      s = $1; e = $1 + $2; if (e > limit) e = limit; if (s >= e) next
      if (n && s <= end) { if (e > end) end = e; next }
      if (n) print start, end - start
      start = s; end = e; n++
    }
    END { if (n) print start, end - start }
  ' >"/run/copy.$n.ranges"
  echo "$array /dev/nbd$n" >>/run/arrays
  n=$((n + 1))
done </run/disks
total=$(cat /run/copy.*.ranges | awk '{ t += $2 } END { printf "%d", t }')
count=$(cat /run/copy.*.ranges | awk 'END { print NR }')
echo "failback: copying $total in $count ranges"
report copying

uptime_ms
started=$ms
shown=$ms
reported=$ms
while read -r array nbd; do
  n=${nbd#/dev/nbd}
  while read -r offset length; do
    dd if="$nbd" of="$array" bs=1M iflag=skip_bytes,count_bytes,fullblock oflag=seek_bytes conv=notrunc \
      skip="$offset" seek="$offset" count="$length" 2>/run/dd.log ||
      fail "copying $length bytes at $offset of $array: $(tail -n 1 /run/dd.log)"
    copied=$((copied + length))
    uptime_ms
    elapsed=$((ms - started))
    if [ $((ms - shown)) -ge 1000 ]; then
      echo "failback: copied $copied of $total"
      shown=$ms
    fi
    if [ $((ms - reported)) -ge 5000 ]; then
      report copying
      reported=$ms
    fi
  done <"/run/copy.$n.ranges"
  sync
  blockdev --flushbufs "$array"
done </run/arrays
uptime_ms
elapsed=$((ms - started))
echo "failback: copied $copied of $total"
while read -r array nbd; do
  mdadm --stop "$array" </dev/null >/run/mdadm.log 2>&1 || fail "cannot stop $array: $(tail -n 1 /run/mdadm.log)"
  nbd-client -d "$nbd" >/dev/null 2>&1
done </run/arrays
echo "failback: done $copied in $elapsed ms"
report done
finish
