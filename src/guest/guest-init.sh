#!/bin/sh
# PID 1 of the Haven test guest (busybox ash). It runs a workload whose
# console output (ttyS0) lets a test judge a recovered disk:
#   haven-guest booted            first line, as early as possible (RTO clock)
#   ip <addr/prefix>              static address applied to eth0
#   mounted /data                 the ext4 data disk /dev/vda is mounted
#   recovered <n> ok              every record on /data verified, last is n
#   corrupt at <n>                record n is malformed or fails its checksum;
#                                 the workload then writes nothing
#   durable <n>                   records 1..n are fsynced to the disk
#   workload stopped at <n>       ACPI powerdown stopped it after record n
#   powered off cleanly           ... and /data was unmounted
#   agent frozen /data            the guest agent (haven-agent, when the domain
#   agent thawed /data            has an org.qemu.guest_agent.0 port) froze or
#                                 thawed /data: no record is written between them
#   bench <k> <figure> ...        haven.workload=bench: round k of the disk
#                                 benchmark (see bench_rounds below)
# Records, one line each in /data/records.log:
#   n <n> sha <sha256 of payload> record-<n>-<boot id>-xxx...
# Kernel command line: haven.workload=records|idle|bench haven.rate=<records/s>
#   haven.batch=<records per fsync> haven.ip=<addr/prefix>[,<gateway>]
#   haven.probe=<IPv4>[,<IPv4>...]  after eth0 is configured, pings each
#                                 address about once a second, forever, and
#                                 prints "probe <addr> reachable|unreachable"
#                                 (lets a test see what the guest can reach)
#   haven.bench=<file MiB>,<latency samples>  sizes of the bench workload
#   haven.statepart=<n>           server variant: the server agent's state dir
#                                 /etc/haven persists on partition n of /dev/vda
#                                 (the system partition, server-boot-disk.ts);
#                                 while it holds no enrolment, /etc/haven-onboard
#                                 (placed by the test, standing in for the
#                                 operator typing the enrolment) runs, so once
#   haven.tput=<MiB>              server variant: a timed write once a second,
#                                 "tput [UU]|[U_] <bytes> <ms>" (mirror state)
# Server variant: when the agent is enrolled (/etc/haven/server.conf, from the
# system partition or the initramfs), /data is on the md raid1 the server
# agent (haven-server-agent, which documents its own console lines) sets up
# over /dev/vda and its NBD leg, and the agent runs beside the workload.
# Console: "server: onboarding", "server: enrolled", "server: onboarding
# failed", "server: not enrolled, /data is not mirrored".
#   haven.datapart=<n>            /data is partition n of the disk (vda<n>, or
#                                 md0p<n> when the whole disk is mirrored):
#                                 the server boot disk (server-boot-disk.ts)
# Records service: once eth0 has its address, busybox httpd answers on port 80
# (console: "serving records on port 80"); GET /records returns the records
# workload's latest state line, one of "booted", "mounted /data",
# "recovered <n> ok", "corrupt at <n>", "durable <n>", "workload stopped at
# <n>", "no data disk", so a drill's check script can verify the guest's
# records from the test network (e.g. wget -qO- http://<addr>/records).
export PATH=/bin

mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
echo "haven-guest booted"
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /run /data /run/www
# The records service's answer (see above); written before each state's console line.
state() { echo "$1" >/run/www/records.new && mv /run/www/records.new /run/www/records; }
state booted

workload=records
rate=2
batch=1
ip_spec=
probe_spec=
bench_spec=32,64
statepart=
tput_spec=
datapart=
for word in $(cat /proc/cmdline); do
  case "$word" in
    haven.workload=*) workload="${word#*=}" ;;
    haven.rate=*) rate="${word#*=}" ;;
    haven.batch=*) batch="${word#*=}" ;;
    haven.ip=*) ip_spec="${word#*=}" ;;
    haven.probe=*) probe_spec="${word#*=}" ;;
    haven.bench=*) bench_spec="${word#*=}" ;;
    haven.statepart=*) statepart="${word#*=}" ;;
    haven.tput=*) tput_spec="${word#*=}" ;;
    haven.datapart=*) datapart="${word#*=}" ;;
  esac
done

# Modules in dependency order, written by the image builder.
while read -r module; do
  insmod "/lib/modules/$module" || echo "haven-guest: insmod $module failed"
done </lib/modules/load-order

# ACPI powerdown (QMP system_powerdown) arrives as a power-button key press on
# an evdev device; busybox acpid maps it to our handler.
acpid -c /etc/acpi -p /run/acpid.pid -l /run/acpid.log

configure_ip() {
  addr="${ip_spec%%,*}"
  gateway=
  case "$ip_spec" in *,*) gateway="${ip_spec#*,}" ;; esac
  i=0
  while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
  if [ ! -e /sys/class/net/eth0 ]; then
    echo "haven-guest: no eth0 for haven.ip=$ip_spec"
    return
  fi
  ip link set lo up
  ip link set eth0 up
  ip addr add "$addr" dev eth0 || return
  [ -n "$gateway" ] && ip route add default via "$gateway"
  echo "ip $addr"
  httpd -p 80 -h /run/www && echo "serving records on port 80"
}
[ -n "$ip_spec" ] && configure_ip

# In the background, so the disk workload runs as usual beside it.
probe() {
  while true; do
    for target in $(echo "$probe_spec" | tr , ' '); do
      if ping -c 1 -W 1 "$target" >/dev/null 2>&1; then
        echo "probe $target reachable"
      else
        echo "probe $target unreachable"
      fi
    done
    sleep 1
  done
}
[ -n "$probe_spec" ] && probe &

idle() {
  rm -f /run/workload.pid
  while true; do sleep 3600; done
}

i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
disk=/dev/vda

# The agent's state lives on the server's own disk: copy it into /etc/haven
# (the partition must not stay mounted: md opens the whole disk exclusively),
# or enrol first when there is none yet. Once md owns the disk, its member is
# only read (ro,noload): every write must go through md to reach both legs.
server_state() {
  mkdir -p /system
  rw=
  if mdadm --examine /dev/vda 2>/dev/null | grep -q 'Array UUID'; then
    mount -t ext4 -o ro,noload "/dev/vda$statepart" /system || return
  else
    mount -t ext4 "/dev/vda$statepart" /system || return
    rw=1
  fi
  if [ -e /system/etc/haven/server.conf ]; then
    mkdir -p /etc/haven && cp -a /system/etc/haven/. /etc/haven/
  elif [ -n "$rw" ] && [ -e /etc/haven-onboard ]; then
    echo "server: onboarding"
    if sh /etc/haven-onboard; then
      mkdir -p /system/etc/haven && cp -a /etc/haven/. /system/etc/haven/ && sync && echo "server: enrolled"
    else
      echo "server: onboarding failed"
    fi
  fi
  umount /system
}

server_agent=
if command -v haven-server-agent >/dev/null; then
  [ -n "$statepart" ] && server_state
  if [ -e /etc/haven/server.conf ]; then
    server_agent=1
    # The agent's local hooks for an ordered shutdown (guest-powerdown.sh).
    mkdir -p /etc/haven/hooks
    printf '#!/bin/sh\nexec haven-powerdown quiesce\n' >/etc/haven/hooks/stop-writes
    printf '#!/bin/sh\nexec haven-powerdown\n' >/etc/haven/hooks/poweroff
    chmod 755 /etc/haven/hooks/stop-writes /etc/haven/hooks/poweroff
    if haven-server-agent setup; then
      disk=/dev/md0
    else
      state "no data disk"
      echo "haven-guest: no mirrored disk (haven-server-agent setup failed)"
      idle
    fi
  elif [ -n "$statepart" ]; then
    echo "server: not enrolled, /data is not mirrored"
  fi
fi
if [ -n "$datapart" ]; then
  case "$disk" in
    *[0-9]) disk="${disk}p$datapart" ;;
    *) disk="$disk$datapart" ;;
  esac
  # Without udev nobody asks md to read its partition table.
  case "$disk" in /dev/md*) blockdev --rereadpt "${disk%p*}" ;; esac
  i=0
  while [ ! -b "$disk" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
fi
if ! mount -t ext4 "$disk" /data; then
  state "no data disk"
  echo "haven-guest: cannot mount $disk as ext4 (format it on the host first)"
  idle
fi
state "mounted /data"
echo "mounted /data"
# Serves the guest-agent port if the domain has one (guest-agent.sh); exits otherwise.
haven-agent &

# Milliseconds since boot into $ms (10 ms steps); the fraction loses its
# leading zero first, or ash reads "08" as a bad octal number.
uptime_ms() {
  read -r up _ </proc/uptime
  frac=${up#*.}
  ms=$((${up%.*} * 1000 + (1$frac - 100) * 10))
}

# haven.tput: one timed O_DIRECT write of $1 MiB to /data/tput.dat a second.
measure() {
  while true; do
    mirror=$(grep -o '\[[U_]*\]' /proc/mdstat | head -n 1)
    uptime_ms
    t0=$ms
    dd if=/dev/zero of=/data/tput.dat bs=1M count="$1" oflag=direct conv=notrunc,fsync 2>/dev/null || break
    uptime_ms
    echo "tput $mirror $(($1 * 1048576)) $((ms - t0))"
    sleep 1
  done
}

if [ -n "$server_agent" ]; then
  haven-server-agent run &
  echo $! >/run/server-agent.pid
  # Powerdown stops it first (it keeps /data busy).
  if [ -n "$tput_spec" ]; then
    measure "$tput_spec" &
    echo $! >>/run/writer.pids
  fi
fi

# Monotonic nanoseconds into $ns without a fork (busybox date has no %N; a
# brace group with a redirection runs in this shell). /proc/uptime (10 ms) if
# the kernel has no timer_list.
stamp() {
  if [ -r /proc/timer_list ]; then
    { read -r _; read -r _; read -r _ _ ns _; } </proc/timer_list
  else
    read -r up _ </proc/uptime
    ns=$(( ${up%.*} * 1000000000 + ${up#*.} * 10000000 ))
  fi
}

# The disk benchmark, round after round until powered down, each printed as
#   bench <k> write <bytes> <ns>     O_DIRECT 1 MiB writes over the bench file
#   bench <k> read <bytes> <ns>      O_DIRECT 1 MiB reads of it
#   bench <k> stream <writes> <ns>   4 KiB O_DIRECT writes at queue depth 1, one dd
#   bench <k> lat <ns> <ns>...       one 4 KiB O_DIRECT write per dd, each timed
#   bench <k> fork <ns> <ns>...      the same dd to /dev/null (the fork and exec in lat)
#   bench <k> end
# Each round writes fresh random data, so a replica that compares blocks
# sees every round as a change. Nothing here forks per block except lat.
bench_rounds() {
  mib="${bench_spec%%,*}"
  samples="${bench_spec#*,}"
  file=/data/bench.dat
  chunk=8
  [ "$mib" -lt "$chunk" ] && chunk=$mib
  passes=$((mib / chunk))
  blocks=$((mib * 256))
  stream=$((chunk * 256))
  [ "$stream" -gt 512 ] && stream=512
  dd if=/dev/zero of="$file" bs=1M count="$mib" 2>/dev/null && sync "$file"
  dd if=/dev/urandom of=/run/bench.4k bs=4k count=1 2>/dev/null
  k=0
  while [ -z "$stopping" ]; do
    k=$((k + 1))
    dd if=/dev/urandom of=/run/bench.src bs=1M count="$chunk" 2>/dev/null
    p=0
    stamp; t0=$ns
    while [ $p -lt $passes ]; do
      dd if=/run/bench.src of="$file" bs=1M count="$chunk" seek=$((p * chunk)) oflag=direct conv=notrunc 2>/dev/null ||
        { echo "haven-guest: write failed in bench round $k"; idle; }
      p=$((p + 1))
    done
    stamp; echo "bench $k write $((passes * chunk * 1048576)) $((ns - t0))"
    stamp; t0=$ns
    dd if="$file" of=/dev/null bs=1M iflag=direct 2>/dev/null
    stamp; echo "bench $k read $((mib * 1048576)) $((ns - t0))"
    stamp; t0=$ns
    dd if=/run/bench.src of="$file" bs=4k count="$stream" oflag=direct conv=notrunc 2>/dev/null
    stamp; echo "bench $k stream $stream $((ns - t0))"
    lat=
    fork=
    i=0
    while [ $i -lt "$samples" ]; do
      stamp; t0=$ns
      dd if=/run/bench.4k of="$file" bs=4k count=1 seek=$(((i * 7919 + k) % blocks)) oflag=direct conv=notrunc 2>/dev/null
      stamp; lat="$lat $((ns - t0))"
      stamp; t0=$ns
      dd if=/run/bench.4k of=/dev/null bs=4k count=1 2>/dev/null
      stamp; fork="$fork $((ns - t0))"
      i=$((i + 1))
    done
    echo "bench $k lat$lat"
    echo "bench $k fork$fork"
    echo "bench $k end"
  done
}

if [ "$workload" = bench ]; then
  trap 'stopping=1' TERM
  echo $$ >/run/workload.pid
  stopping=
  bench_rounds
  echo "workload stopped at bench"
  rm -f /run/workload.pid
  idle
fi

if [ "$workload" != records ]; then
  idle
fi

log=/data/records.log
[ -e "$log" ] || { : >"$log"; sync /data; }

# Verify every record: numbers run 1, 2, 3... and each checksum matches its
# payload. Forking sha256sum per line is slow on TCG, so each chunk of 1000
# records becomes one file per payload and one sha256sum over them all
# (chunked because every tmpfs file costs a page of the guest's 128 MiB).
# Prints "ok <last>" or "corrupt at <n>" (the lowest bad record). It fails
# closed: unless every line was checked, the log is not called ok.
verify_records() {
  total=$(awk 'END { print NR }' "$log")
  first_bad=$(awk '
    $1 != "n" || $2 != NR || $3 != "sha" || NF != 5 || length($4) != 64 { print NR; exit }
  ' "$log")
  checked=0
  mismatch=
  start=1
  while [ "$start" -le "$total" ]; do
    end=$((start + 999))
    rm -rf /run/verify && mkdir /run/verify
    # Files are named by line number, never by the (untrusted) record text.
    awk -v s="$start" -v e="$end" '
      NR > e { exit }
      NR >= s && NF == 5 { f = "/run/verify/" NR; printf "%s", $5 > f; close(f) }
    ' "$log"
    result=$( (cd /run/verify && find . -type f | xargs -r sha256sum) | awk -v s="$start" -v e="$end" '
      FILENAME == "-" { sub("^\\./", "", $2); sum[$2] = $1; next }
      FNR > e { exit }
      FNR >= s && NF == 5 { if (sum[FNR] != $4) { bad = FNR; exit } checked++ }
      END { if (bad) print "bad " bad; else print "checked " checked + 0 }
    ' - "$log")
    rm -rf /run/verify
    case "$result" in
      "bad "*) mismatch="${result#bad }"; break ;;
      "checked "*) checked=$((checked + ${result#checked })) ;;
      *) break ;;
    esac
    start=$((end + 1))
  done
  if [ -n "$mismatch" ] && { [ -z "$first_bad" ] || [ "$mismatch" -lt "$first_bad" ]; }; then
    first_bad=$mismatch
  fi
  if [ -n "$first_bad" ]; then
    echo "corrupt at $first_bad"
  elif [ "$checked" -ne "$total" ]; then
    echo "corrupt at unknown: verified $checked of $total records"
  else
    echo "ok $total"
  fi
}

verdict=$(verify_records)
case "$verdict" in
  ok*) last="${verdict#ok }" ;;
  *)
    state "$verdict"
    echo "$verdict"
    idle
    ;;
esac
state "recovered $last ok"
echo "recovered $last ok"

# The workload: append a batch, fsync the file, then announce it durable.
interval=$(awk -v b="$batch" -v r="$rate" 'BEGIN { printf "%.3f", b / r }')
n=$last
stopping=
trap 'stopping=1' TERM
echo $$ >/run/workload.pid
pad=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
# Records name the boot that wrote them, so two sites' copies of record n differ.
boot=$(cut -c1-8 /proc/sys/kernel/random/boot_id)
while [ -z "$stopping" ]; do
  lines=
  k=0
  while [ $k -lt "$batch" ]; do
    n=$((n + 1))
    payload="record-$n-$boot-$pad"
    sum=$(printf "%s" "$payload" | sha256sum)
    lines="${lines}n $n sha ${sum%% *} $payload
"
    k=$((k + 1))
  done
  # A failed write (disk full) or fsync stops the workload: "durable" must never lie.
  printf "%s" "$lines" >>"$log" || { echo "haven-guest: write failed at record $n"; idle; }
  sync "$log" || { echo "haven-guest: fsync failed after record $n"; idle; }
  state "durable $n"
  echo "durable $n"
  sleep "$interval"
done
state "workload stopped at $n"
echo "workload stopped at $n"
rm -f /run/workload.pid
idle
