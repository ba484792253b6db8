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
# Records, one line each in /data/records.log:
#   n <n> sha <sha256 of payload> record-<n>-<boot id>-xxx...
# Kernel command line: haven.workload=records|idle haven.rate=<records/s>
#   haven.batch=<records per fsync> haven.ip=<addr/prefix>[,<gateway>]
#   haven.probe=<IPv4>[,<IPv4>...]  after eth0 is configured, pings each
#                                 address about once a second, forever, and
#                                 prints "probe <addr> reachable|unreachable"
#                                 (lets a test see what the guest can reach)
export PATH=/bin

mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
echo "haven-guest booted"
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /run /data

workload=records
rate=2
batch=1
ip_spec=
probe_spec=
for word in $(cat /proc/cmdline); do
  case "$word" in
    haven.workload=*) workload="${word#*=}" ;;
    haven.rate=*) rate="${word#*=}" ;;
    haven.batch=*) batch="${word#*=}" ;;
    haven.ip=*) ip_spec="${word#*=}" ;;
    haven.probe=*) probe_spec="${word#*=}" ;;
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
if ! mount -t ext4 /dev/vda /data; then
  echo "haven-guest: cannot mount /dev/vda as ext4 (format it on the host first)"
  idle
fi
echo "mounted /data"
# Serves the guest-agent port if the domain has one (guest-agent.sh); exits otherwise.
haven-agent &

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
    echo "$verdict"
    idle
    ;;
esac
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
  echo "durable $n"
  sleep "$interval"
done
echo "workload stopped at $n"
rm -f /run/workload.pid
idle
