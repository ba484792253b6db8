#!/bin/sh
# The "physical server" part of the Haven test guest (server variant of the
# image only): the server's own disk /dev/vda mirrored by md raid1 onto an NBD
# export of Haven's disk service, the write splitter a protected Linux server
# runs. guest-init.sh calls it when the kernel command line has
#   haven.nbd=<IPv4>:<port>:<export>   the disk service's export (plain TCP)
#   haven.nbdtimeout=<s>               nbd-client timeout (default 5): a cut
#                                      link fails the NBD leg after this long
#                                      instead of hanging the server's I/O
#   haven.writebehind=<n>              md write-behind of up to n writes to
#                                      the NBD leg (default: synchronous)
#   haven.nbdtls=<hostname>            STARTTLS with a client certificate:
#                                      /etc/haven/nbd-tls/{ca,cert,key}.pem
#                                      (appended to the initramfs by the
#                                      test), the server's certificate checked
#                                      against ca.pem for <hostname>
# Modes:
#   haven-server-disk setup     connect /dev/nbd0, create the array the first
#                               time or assemble it, exit 0 when /dev/md0 is up
#   haven-server-disk watch     forever: report the mirror's state, reconnect
#                               the NBD leg when it failed and re-add it
#   haven-server-disk tput MiB  forever: time an O_DIRECT write of MiB to
#                               /data/tput.dat, once a second
# Console lines:
#   nbd: connected <host>:<port>/<export>[ over TLS]
#   nbd: cannot connect <host>:<port>/<export>
#   md: created raid1 metadata 1.0 on /dev/vda and /dev/nbd0 (write-mostly)
#   md: assembled /dev/md0 from <members>
#   md: active raid1 [UU]          both legs in sync
#   md: active raid1 [U_]          degraded: the NBD leg failed or is missing
#   md: resync <pct>% (<done>/<total>)    initial resync (1 KiB blocks)
#   md: recovery <pct>% (<done>/<total>)  re-added leg catching up
#   md: synced                     a resync or recovery finished, both legs equal
#   md: bitmap dirty <d> of <n> chunks of <KiB> KiB   changed while degraded
#   md: re-added /dev/nbd0
#   tput [UU]|[U_] <bytes> <ms>    haven.tput: one timed write, mirror state
# md metadata 1.0 lives at the end of each member, so /dev/vda and the export
# each still hold a plain ext4 at offset 0; the filesystem must leave room for
# it (the host formats it smaller than the disk).
export PATH=/bin
MD=/dev/md0
NBD=/dev/nbd0
LOCAL=/dev/vda

spec=
timeout=5
writebehind=
tls_host=
for word in $(cat /proc/cmdline); do
  case "$word" in
    haven.nbd=*) spec="${word#*=}" ;;
    haven.nbdtimeout=*) timeout="${word#*=}" ;;
    haven.writebehind=*) writebehind="${word#*=}" ;;
    haven.nbdtls=*) tls_host="${word#*=}" ;;
  esac
done
host="${spec%%:*}"
rest="${spec#*:}"
port="${rest%%:*}"
export_name="${rest#*:}"

TLS_DIR=/etc/haven/nbd-tls
tls=
[ -n "$tls_host" ] && tls="-cacertfile $TLS_DIR/ca.pem -certfile $TLS_DIR/cert.pem -keyfile $TLS_DIR/key.pem -tlshostname $tls_host"

# One attempt, bounded: a link that swallows packets must not stall the caller.
# With TLS, nbd-client stays as the kernel socket's encrypting proxy.
connect() {
  if timeout 15 nbd-client "$host" "$port" "$NBD" -N "$export_name" -timeout "$timeout" $tls \
    >/run/nbd-client.log 2>&1; then
    echo "nbd: connected $host:$port/$export_name${tls:+ over TLS}"
    return 0
  fi
  return 1
}

mirror_state() {
  grep -o '\[[U_]*\]' /proc/mdstat | head -n 1
}

setup() {
  i=0
  until connect; do
    i=$((i + 1))
    if [ $i -ge 3 ]; then
      echo "nbd: cannot connect $host:$port/$export_name"
      tail -n 3 /run/nbd-client.log
      break
    fi
    sleep 1
  done
  nbd_up=
  [ -s /sys/block/nbd0/size ] && [ "$(cat /sys/block/nbd0/size)" != 0 ] && nbd_up=1
  # An md member, not merely a disk mdadm can read (a partitioned disk is "mbr metadata" to it).
  if mdadm --examine "$LOCAL" 2>/dev/null | grep -q 'Array UUID'; then
    members=$LOCAL
    [ -n "$nbd_up" ] && members="$LOCAL $NBD"
    mdadm --assemble "$MD" --run $members </dev/null >/run/mdadm.log 2>&1 || {
      echo "md: cannot assemble $MD from $members"
      tail -n 3 /run/mdadm.log
      return 1
    }
    echo "md: assembled $MD from $members"
    # A leg that was away while the server ran alone comes back through the bitmap.
    [ -n "$nbd_up" ] && ! grep -q nbd0 /proc/mdstat && readd
  else
    [ -n "$nbd_up" ] || return 1
    behind=
    [ -n "$writebehind" ] && behind="--write-behind=$writebehind"
    # --run: the members hold a filesystem already, and that is the point.
    mdadm --create "$MD" --run --level=1 --raid-devices=2 --metadata=1.0 \
      --bitmap=internal --bitmap-chunk=64K $behind "$LOCAL" --write-mostly "$NBD" \
      </dev/null >/run/mdadm.log 2>&1 || {
      echo "md: cannot create raid1"
      tail -n 3 /run/mdadm.log
      return 1
    }
    echo "md: created raid1 metadata 1.0 on $LOCAL and $NBD (write-mostly)"
  fi
  i=0
  while [ ! -b "$MD" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  echo "md: active raid1 $(mirror_state)"
}

# The bitmap of the local member says what changed while the leg was away.
readd() {
  bits=$(mdadm -X "$LOCAL" 2>/dev/null | grep 'Bitmap :')
  chunk=$(mdadm -X "$LOCAL" 2>/dev/null | grep 'Chunksize :' | awk '{ print $3 $4 }')
  total=$(echo "$bits" | awk '{ print $3 }')
  dirty=$(echo "$bits" | awk '{ print $6 }')
  echo "md: bitmap dirty $dirty of $total chunks of $chunk"
  if mdadm "$MD" --re-add "$NBD" </dev/null >/run/mdadm.log 2>&1; then
    echo "md: re-added $NBD"
  else
    echo "md: cannot re-add $NBD: $(tail -n 1 /run/mdadm.log)"
    return 1
  fi
}

watch_mirror() {
  last=
  progress=
  # Until both legs are known equal: set at boot and by every re-add.
  pending=1
  while true; do
    state=$(mirror_state)
    if [ "$state" != "$last" ]; then
      echo "md: active raid1 $state"
      last=$state
    fi
    now=$(grep -oE '(resync|recovery) = +[0-9.]+% \([0-9]+/[0-9]+\)' /proc/mdstat | tr -s ' ')
    if [ -n "$now" ] && [ "$now" != "$progress" ]; then
      set -- $now
      echo "md: $1 $3 $4"
    fi
    progress=$now
    if [ -n "$pending" ] && [ "$state" = "[UU]" ] && [ "$(cat /sys/block/md0/md/sync_action)" = idle ]; then
      echo "md: synced"
      pending=
    fi
    if [ "$state" = "[U_]" ]; then
      # The failed leg leaves the array, then comes back when the link does.
      mdadm "$MD" --remove failed </dev/null >/dev/null 2>&1
      mdadm "$MD" --remove detached </dev/null >/dev/null 2>&1
      if ! grep -q nbd0 /proc/mdstat; then
        nbd-client -d "$NBD" >/dev/null 2>&1
        connect && readd && pending=1
      fi
    fi
    sleep 1
  done
}

# Milliseconds since boot into $ms (10 ms steps); the fraction loses its
# leading zero first, or ash reads "08" as a bad octal number.
uptime_ms() {
  read -r up _ </proc/uptime
  frac=${up#*.}
  ms=$((${up%.*} * 1000 + (1$frac - 100) * 10))
}

measure() {
  mib=$1
  while true; do
    state=$(mirror_state)
    uptime_ms
    t0=$ms
    dd if=/dev/zero of=/data/tput.dat bs=1M count="$mib" oflag=direct conv=notrunc,fsync 2>/dev/null || break
    uptime_ms
    echo "tput $state $((mib * 1048576)) $((ms - t0))"
    sleep 1
  done
}

case "$1" in
  setup) setup ;;
  watch) watch_mirror ;;
  tput) measure "$2" ;;
  *) echo "usage: haven-server-disk setup|watch|tput MiB" >&2; exit 2 ;;
esac
