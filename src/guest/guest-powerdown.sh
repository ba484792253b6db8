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
sync
if umount /data 2>/dev/null || ! grep -q ' /data ' /proc/mounts; then
  echo "powered off cleanly" >/dev/console
else
  echo "haven-guest: /data still busy at power off" >/dev/console
fi
poweroff -f
