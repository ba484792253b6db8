#!/bin/sh
# A minimal QEMU guest agent for the Haven test guest (busybox ash), started
# by init in the background. It serves the virtio serial port named
# org.qemu.guest_agent.0 when the domain has one, answering the JSON lines
# libvirt sends (one command per line, one reply per line):
#   guest-sync, guest-sync-delimited   echo the id (libvirt syncs before commands)
#   guest-ping, guest-info
#   guest-fsfreeze-freeze[-list]       fsfreeze --freeze /data, returns 1
#   guest-fsfreeze-thaw                fsfreeze --unfreeze /data, returns 1 (0 when not frozen)
#   guest-fsfreeze-status              "frozen" or "thawed"
#   haven-test-silence {"seconds": N}  answers, then reads nothing for N seconds
#                                      (lets a test see an agent that does not answer)
# It prints "agent frozen /data" and "agent thawed /data" on the console, so a
# test sees when the workload's writes must pause. Anything else is answered
# with a CommandNotFound error.
export PATH=/bin
FS=/data

# The port appears once virtio_console has probed the device; none at all
# without a guest-agent channel.
port=
i=0
while [ -z "$port" ] && [ $i -lt 100 ]; do
  for name in /sys/class/virtio-ports/*/name; do
    [ -e "$name" ] || continue
    if [ "$(cat "$name")" = org.qemu.guest_agent.0 ]; then
      dev="${name%/name}"
      port="/dev/${dev##*/}"
    fi
  done
  [ -n "$port" ] && [ -e "$port" ] && break
  port=
  sleep 0.1
  i=$((i + 1))
done
[ -z "$port" ] && exit 0
exec 3<>"$port" || { echo "haven-agent: cannot open $port"; exit 1; }
echo "agent listening on $port"

frozen=
reply() { printf '%s\n' "$1" >&3; }
error() { reply "{\"error\": {\"class\": \"$1\", \"desc\": \"$2\"}}"; }
number_arg() { echo "$1" | sed -n "s/.*\"$2\"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p"; }

while true; do
  # read fails at end of file: nobody has the host side open yet. Keep the port, look again.
  if ! IFS= read -r line <&3; then
    sleep 0.2
    continue
  fi
  command=$(echo "$line" | sed -n 's/.*"execute"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
  case "$command" in
    '') ;; # a sync's leading 0xFF byte, a blank line: nothing to answer
    guest-sync) reply "{\"return\": $(number_arg "$line" id)}" ;;
    guest-sync-delimited) printf '\377{"return": %s}\n' "$(number_arg "$line" id)" >&3 ;;
    guest-ping) reply '{"return": {}}' ;;
    guest-info)
      supported=
      for c in guest-sync guest-sync-delimited guest-ping guest-info guest-fsfreeze-freeze \
        guest-fsfreeze-freeze-list guest-fsfreeze-thaw guest-fsfreeze-status; do
        supported="$supported${supported:+, }{\"name\": \"$c\", \"enabled\": true, \"success-response\": true}"
      done
      reply "{\"return\": {\"version\": \"haven-test-agent\", \"supported_commands\": [$supported]}}"
      ;;
    guest-fsfreeze-freeze | guest-fsfreeze-freeze-list)
      if [ -n "$frozen" ]; then
        error GenericError "Command guest-fsfreeze-freeze has been disabled: the agent is in frozen state"
      elif fsfreeze --freeze "$FS" 2>/dev/null; then
        frozen=1
        echo "agent frozen $FS"
        reply '{"return": 1}'
      else
        error GenericError "failed to freeze $FS"
      fi
      ;;
    guest-fsfreeze-thaw)
      if [ -z "$frozen" ]; then
        reply '{"return": 0}'
      elif fsfreeze --unfreeze "$FS" 2>/dev/null; then
        frozen=
        echo "agent thawed $FS"
        reply '{"return": 1}'
      else
        error GenericError "failed to thaw $FS"
      fi
      ;;
    guest-fsfreeze-status)
      if [ -n "$frozen" ]; then reply '{"return": "frozen"}'; else reply '{"return": "thawed"}'; fi
      ;;
    haven-test-silence)
      seconds=$(number_arg "$line" seconds)
      reply '{"return": {}}'
      echo "agent silent for ${seconds:-0} s"
      sleep "${seconds:-0}"
      ;;
    *) error CommandNotFound "The command $command has not been found" ;;
  esac
done
