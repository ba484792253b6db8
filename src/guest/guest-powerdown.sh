#!/bin/sh
# Run by acpid on an ACPI power-button event (QMP system_powerdown): stop the
# workload between batches, unmount /data so the disk is clean, power off.
# Server variant: the server agent's ordered shutdown calls it twice, as its
# hooks: `haven-powerdown quiesce` (stop-writes: stop there, the agent then
# syncs and stops md itself) and `haven-powerdown` (poweroff).
export PATH=/bin
pid=$(cat /run/workload.pid 2>/dev/null)
if [ -n "$pid" ]; then
  kill -TERM "$pid"
  i=0
  while [ -e /run/workload.pid ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
fi
[ -e /run/writer.pids ] && kill $(cat /run/writer.pids) 2>/dev/null
sync
# A writer just killed may still hold /data for a moment (its dd finishing).
i=0
while grep -q ' /data ' /proc/mounts && ! umount /data 2>/dev/null && [ $i -lt 30 ]; do
  sleep 0.1
  i=$((i + 1))
done
if [ "$1" = quiesce ]; then
  grep -q ' /data ' /proc/mounts && echo "haven-guest: /data still busy" >/dev/console
  exit 0
fi
if ! grep -q ' /data ' /proc/mounts; then
  echo "powered off cleanly" >/dev/console
else
  echo "haven-guest: /data still busy at power off" >/dev/console
fi
# The server variant: the agent (unless it is who called: its hook runs as
# its own pid), then the mirror, so both legs' superblocks and bitmap say clean.
agent=$(cat /run/server-agent.pid 2>/dev/null)
[ -n "$agent" ] && [ "$agent" != $$ ] && kill "$agent" 2>/dev/null
[ -b /dev/md0 ] && mdadm --stop /dev/md0 >/dev/null 2>&1
poweroff -f
