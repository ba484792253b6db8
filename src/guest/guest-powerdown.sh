#!/bin/sh
# Run by acpid on an ACPI power-button event (QMP system_powerdown): stop the
# workload between batches, unmount /data so the disk is clean, power off.
export PATH=/bin
pid=$(cat /run/workload.pid 2>/dev/null)
if [ -n "$pid" ]; then
  kill -TERM "$pid"
  i=0
  while [ -e /run/workload.pid ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
fi
[ -e /run/server-disk.pids ] && kill $(cat /run/server-disk.pids) 2>/dev/null
sync
# A writer just killed may still hold /data for a moment (its dd finishing).
i=0
while grep -q ' /data ' /proc/mounts && ! umount /data 2>/dev/null && [ $i -lt 30 ]; do
  sleep 0.1
  i=$((i + 1))
done
if ! grep -q ' /data ' /proc/mounts; then
  echo "powered off cleanly" >/dev/console
else
  echo "haven-guest: /data still busy at power off" >/dev/console
fi
# The server variant: stop the mirror so both legs' superblocks and bitmap say clean.
[ -b /dev/md0 ] && mdadm --stop /dev/md0 >/dev/null 2>&1
poweroff -f
