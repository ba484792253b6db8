#!/bin/sh
# haven-server-agent: what runs on a physical Linux server Haven protects.
# Each protected block device becomes an md raid1 of the device itself and an
# NBD leg (over TLS, --write-mostly) on an export of the primary-site host's
# disk service: the kernel's own write splitter. This agent enrols the server
# with that host, sets up the mirrors, keeps them whole (re-adding the NBD leg
# when the link returns), reports their state and obeys the host's commands.
# POSIX sh (busybox ash, dash); needs only busybox applets, openssl,
# nbd-client and mdadm.
#
#   haven-server-agent enrol --agent ADDR:PORT --tls-hostname NAME --ca-file FILE
#                            --token TOKEN [--state-dir DIR]
#   haven-server-agent setup   [--state-dir DIR]   connect the NBD legs, create or assemble
#                                                  the arrays (also the initramfs hook)
#   haven-server-agent run     [--state-dir DIR]   forever: watch, re-add, report, obey
#   haven-server-agent status  [--state-dir DIR]   print what it would report
#   haven-server-agent failback-report [--state-dir DIR] PHASE COPIED TOTAL MS [WHY]
#                              the recovery environment's one report of a failback
#                              onto this server (PHASE copying, done or failed)
#
# State dir (default /etc/haven): server.conf (the host's lines: machine, name,
# nbd, agent, timeout, writebehind, report, disk...; a local "resyncfloor KiB/s"
# line changes the floor of md's resync speed, 20000 by default), tls/{ca,cert,key}.pem,
# and optional local hooks: hooks/stop-writes (stops the workload's writes
# before an ordered shutdown) and hooks/poweroff (default: poweroff).
# Disk n of server.conf (from 0) is mirrored as /dev/md<n> over its device
# and /dev/nbd<n>.
#
# Console lines (stdout), one event each:
#   nbd: connected <host>:<port>/<export> over TLS
#   nbd: cannot connect <host>:<port>/<export>
#   md: created raid1 metadata 1.0 on <device> and <nbd> (write-mostly)
#   md: assembled <array> from <members>
#   md: active raid1 [UU]          both legs in sync ([U_]: the NBD leg is out)
#   md: resync <pct>% (<done>/<total>)    initial resync (1 KiB blocks)
#   md: recovery <pct>% (<done>/<total>)  re-added leg catching up
#   md: synced                     a resync or recovery finished, both legs equal
#   md: bitmap dirty <d> of <n> chunks of <KiB>KB   changed while degraded
#   md: re-added <nbd>
#   agent: report failed: <why>    retried at the next interval
#   agent: shutdown requested      then a last report (state stopping), power off
# md metadata 1.0 lives at the end of each member, so the device and the
# export each still hold a plain filesystem at offset 0.
export PATH="/bin:/sbin:/usr/bin:/usr/sbin:$PATH"
VERSION=1
STATE_DIR=/etc/haven
RUN=${HAVEN_RUN_DIR:-/run/haven-server-agent}

usage() {
  cat >&2 <<'EOF'
usage: haven-server-agent enrol --agent ADDR:PORT --tls-hostname NAME --ca-file FILE --token TOKEN [--state-dir DIR]
       haven-server-agent setup|run|status [--state-dir DIR]
       haven-server-agent failback-report [--state-dir DIR] copying|done|failed COPIED TOTAL MS [WHY]
EOF
  exit 2
}

die() {
  echo "haven-server-agent: $*" >&2
  exit 1
}

# ---- HTTPS through openssl s_client -------------------------------------

# https_post ADDR:PORT PATH BODYFILE [BEARER]: one HTTP/1.1 request, the host's
# certificate verified against $CA for $TLS_HOST, the client certificate sent
# when $CERT is set. Sets HTTP_STATUS and writes the body to $RUN/response.body;
# returns 1 with the reason in HTTP_ERROR when no answer came. Bounded, so a
# dead link costs one interval, never a hung agent.
https_post() {
  addr=$1
  path=$2
  body=$3
  bearer=$4
  HTTP_STATUS=
  HTTP_ERROR=
  {
    printf 'POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n' "$path" "$TLS_HOST"
    printf 'Content-Length: %s\r\nConnection: close\r\n' "$(wc -c <"$body" | tr -d ' ')"
    [ -n "$bearer" ] && printf 'Authorization: Bearer %s\r\n' "$bearer"
    printf '\r\n'
    cat "$body"
  } >"$RUN/request"
  set --
  [ -n "$CERT" ] && set -- -cert "$CERT" -key "$KEY"
  # -quiet implies -ign_eof: s_client reads the answer until the host closes.
  timeout 20 openssl s_client -quiet -connect "$addr" -servername "$TLS_HOST" \
    -verify_hostname "$TLS_HOST" -verify_return_error -CAfile "$CA" "$@" <"$RUN/request" >"$RUN/response" 2>"$RUN/s_client.log"
  HTTP_STATUS=$(sed -n '1s/^HTTP\/[0-9.]* \([0-9][0-9]*\).*/\1/p' "$RUN/response")
  http_body <"$RUN/response" | tr -d '\r' >"$RUN/response.body"
  [ -n "$HTTP_STATUS" ] && return 0
  # No status line: say which of the usual failures it was.
  if grep -qi 'verify error\|certificate verify failed\|hostname mismatch' "$RUN/s_client.log"; then
    HTTP_ERROR="the host's certificate does not match $CA for $TLS_HOST: $(grep -i 'verify' "$RUN/s_client.log" | head -n 1)"
  elif grep -qi 'connect\|refused\|unreachable\|no route\|timed out' "$RUN/s_client.log" || [ ! -s "$RUN/s_client.log" ]; then
    HTTP_ERROR="cannot reach the host agent at $addr: $(head -n 1 "$RUN/s_client.log")"
  else
    HTTP_ERROR="no answer from $addr: $(head -n 1 "$RUN/s_client.log")"
  fi
  return 1
}

# http_body: the body of the HTTP response on stdin, de-chunked when the host
# sent it with Transfer-Encoding: chunked (as servers do when they stream).
# Chunk sizes count bytes, so this runs before any CR is stripped.
http_body() {
  awk '
    function hex(s,   i, n) {
      n = 0
      s = tolower(s)
      for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
      return n
    }
    phase == "head" && ($0 == "\r" || $0 == "") { phase = chunked ? "size" : "body"; next }
    phase == "head" { if (tolower($0) ~ /^transfer-encoding: *chunked/) chunked = 1; next }
    phase == "body" { print; next }
    phase == "size" {
      sub(/[;\r].*/, "")
      if ($0 == "") next
      left = hex($0)
      phase = left > 0 ? "data" : "done"
      next
    }
    phase == "data" {
      if (length($0) + 1 <= left) { print; left -= length($0) + 1; if (left == 0) phase = "size"; next }
      # The chunk ends inside this line: its CRLF follows the data.
      printf "%s", substr($0, 1, left)
      phase = "size"
    }
  ' phase=head
}

# ---- configuration ---------------------------------------------------------

# Reads server.conf into shell variables; the disk lines stay in the file and
# are walked with for_each_disk.
load_config() {
  CONF=$STATE_DIR/server.conf
  [ -r "$CONF" ] || die "not enrolled: no $CONF (run haven-server-agent enrol first)"
  MACHINE= NAME= NBD_ADDR= NBD_PORT= TLS_HOST= AGENT= NBD_TIMEOUT=5 WRITE_BEHIND=0 REPORT=30 RESYNC_FLOOR=20000
  while read -r key a b c _; do
    case "$key" in
      machine) MACHINE=$a ;;
      name) NAME=$a ;;
      nbd) NBD_ADDR=$a NBD_PORT=$b TLS_HOST=$c ;;
      agent) AGENT=$a:$b ;;
      timeout) NBD_TIMEOUT=$a ;;
      writebehind) WRITE_BEHIND=$a ;;
      report) REPORT=$a ;;
      resyncfloor) RESYNC_FLOOR=$a ;;
    esac
  done <"$CONF"
  [ -n "$MACHINE" ] && [ -n "$NBD_PORT" ] && [ -n "$TLS_HOST" ] && [ -n "$AGENT" ] ||
    die "$CONF lacks a machine, nbd or agent line"
  grep -q '^disk ' "$CONF" || die "$CONF names no disk"
  TLS=$STATE_DIR/tls
  CA=$TLS/ca.pem
  CERT=$TLS/cert.pem
  KEY=$TLS/key.pem
  mkdir -p "$RUN"
}

# for_each_disk FUNCTION: calls FUNCTION index diskId device export sizeBytes
# for each disk line; the lines come on fd 3 so mdadm and nbd-client cannot
# eat them. Returns 1 if any call failed.
for_each_disk() {
  each_status=0
  each_i=0
  while read -r key id device exp size _ <&3; do
    [ "$key" = disk ] || continue
    "$1" "$each_i" "$id" "$device" "$exp" "$size" || each_status=1
    each_i=$((each_i + 1))
  done 3<"$CONF"
  return $each_status
}

# ---- enrol -----------------------------------------------------------------

enrol() {
  agent= token= ca_file=
  TLS_HOST=
  while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case "$1" in
      --agent) agent=$2 ;;
      --tls-hostname) TLS_HOST=$2 ;;
      --ca-file) ca_file=$2 ;;
      --token) token=$2 ;;
      --state-dir) STATE_DIR=$2 ;;
      *) usage ;;
    esac
    shift 2
  done
  [ -n "$agent" ] && [ -n "$TLS_HOST" ] && [ -n "$ca_file" ] && [ -n "$token" ] || usage
  case "$agent" in *:[0-9]*) ;; *) die "--agent wants ADDRESS:PORT, not '$agent'" ;; esac
  [ -r "$ca_file" ] || die "cannot read the CA file $ca_file"
  mkdir -p "$RUN" || die "cannot create $RUN"
  work=$RUN/enrol
  rm -rf "$work"
  # The private key never leaves this directory, and only root reads it.
  (umask 077 && mkdir "$work") || die "cannot create $work"
  CA=$work/ca.pem
  cp "$ca_file" "$CA"
  # A minimal config: openssl req needs one, and a server may have none.
  printf '[req]\ndistinguished_name = dn\n[dn]\n' >"$work/req.cnf"
  openssl req -new -config "$work/req.cnf" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=haven-server" -keyout "$work/key.pem" -out "$work/csr.pem" 2>"$work/req.log" ||
    die "cannot make a key and certificate request: $(tail -n 1 "$work/req.log")"
  CERT=
  https_post "$agent" /v1/enrol "$work/csr.pem" "$token" || die "$HTTP_ERROR"
  if [ "$HTTP_STATUS" != 200 ]; then
    die "the host refused the enrolment (HTTP $HTTP_STATUS): $(head -n 1 "$RUN/response.body")"
  fi
  # The config lines end at the first blank line; the certificate follows.
  sed '/^$/,$d' "$RUN/response.body" >"$work/server.conf"
  sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$RUN/response.body" >"$work/cert.pem"
  grep -q '^machine ' "$work/server.conf" && grep -q '^disk ' "$work/server.conf" && [ -s "$work/cert.pem" ] ||
    die "the host's answer holds no machine, disk or certificate: $(head -n 1 "$RUN/response.body")"
  mkdir -p "$STATE_DIR/tls" || die "cannot create $STATE_DIR/tls"
  for f in ca.pem cert.pem key.pem; do
    cp "$work/$f" "$STATE_DIR/tls/$f.new" && mv "$STATE_DIR/tls/$f.new" "$STATE_DIR/tls/$f" ||
      die "cannot write $STATE_DIR/tls/$f"
  done
  chmod 600 "$STATE_DIR/tls/key.pem"
  # server.conf last: its presence means the enrolment is complete.
  cp "$work/server.conf" "$STATE_DIR/server.conf.new" && mv "$STATE_DIR/server.conf.new" "$STATE_DIR/server.conf" ||
    die "cannot write $STATE_DIR/server.conf"
  rm -rf "$work"
  echo "enrolled as $(sed -n 's/^name //p' "$STATE_DIR/server.conf") ($(sed -n 's/^machine //p' "$STATE_DIR/server.conf")) with $agent; state in $STATE_DIR"
}

# ---- the mirrors -----------------------------------------------------------

# connect INDEX EXPORT: one bounded attempt; a link that swallows packets must
# not stall the caller. With TLS, nbd-client stays as the kernel socket's
# encrypting proxy. The -timeout makes a cut link fail the leg (md degrades)
# instead of hanging the server's I/O.
connect() {
  if timeout 15 nbd-client "$NBD_ADDR" "$NBD_PORT" "/dev/nbd$1" -N "$2" -timeout "$NBD_TIMEOUT" \
    -cacertfile "$CA" -certfile "$CERT" -keyfile "$KEY" -tlshostname "$TLS_HOST" \
    </dev/null >"$RUN/nbd$1.log" 2>&1; then
    echo "nbd: connected $NBD_ADDR:$NBD_PORT/$2 over TLS"
    return 0
  fi
  return 1
}

# legs INDEX: md's view of the array's members, e.g. [UU], or nothing.
legs() {
  awk -v md="md$1" '$1 == md { on = 1; next } on && /^$/ { exit }
    on && match($0, /\[[U_]+\]/) { print substr($0, RSTART, RLENGTH); exit }' /proc/mdstat
}

# progress INDEX: "resync 12.5% (1234/5678)" while md syncs, else nothing.
progress() {
  awk -v md="md$1" '$1 == md { on = 1; next } on && /^$/ { exit }
    on && match($0, /(resync|recovery) = *[0-9.]+% \([0-9]+\/[0-9]+\)/) {
      split(substr($0, RSTART, RLENGTH), w, / = *| /); print w[1], w[2], w[3]; exit }' /proc/mdstat
}

# The NBD leg is connected when the kernel device has a size.
nbd_up() {
  [ -s "/sys/block/nbd$1/size" ] && [ "$(cat "/sys/block/nbd$1/size")" != 0 ]
}

setup_disk() {
  i=$1 exp=$4 dev=$3
  md=/dev/md$i nbd=/dev/nbd$i
  tries=0
  until connect "$i" "$exp"; do
    tries=$((tries + 1))
    if [ $tries -ge 3 ]; then
      echo "nbd: cannot connect $NBD_ADDR:$NBD_PORT/$exp"
      tail -n 3 "$RUN/nbd$i.log"
      break
    fi
    sleep 1
  done
  up=
  nbd_up "$i" && up=1
  # An md member, not merely a disk mdadm can read (a partitioned disk is "mbr metadata" to it).
  if mdadm --examine "$dev" 2>/dev/null | grep -q 'Array UUID'; then
    members=$dev
    [ -n "$up" ] && members="$dev $nbd"
    mdadm --assemble "$md" --run $members </dev/null >"$RUN/mdadm.log" 2>&1 || {
      echo "md: cannot assemble $md from $members"
      tail -n 3 "$RUN/mdadm.log"
      return 1
    }
    echo "md: assembled $md from $members"
    # A leg that was away while the server ran alone comes back through the bitmap.
    [ -n "$up" ] && ! grep -q "nbd$i\[" /proc/mdstat && readd "$i" "$dev"
  else
    [ -n "$up" ] || return 1
    behind=
    [ "$WRITE_BEHIND" -gt 0 ] 2>/dev/null && behind="--write-behind=$WRITE_BEHIND"
    # --run: the device holds a filesystem already, and that is the point.
    mdadm --create "$md" --run --level=1 --raid-devices=2 --metadata=1.0 \
      --bitmap=internal --bitmap-chunk=64K $behind "$dev" --write-mostly "$nbd" \
      </dev/null >"$RUN/mdadm.log" 2>&1 || {
      echo "md: cannot create raid1"
      tail -n 3 "$RUN/mdadm.log"
      return 1
    }
    echo "md: created raid1 metadata 1.0 on $dev and $nbd (write-mostly)"
  fi
  n=0
  while [ ! -b "$md" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
  # md slows a resync to sync_speed_min (1 MB/s by default) whenever the
  # server does other I/O: the initial replication of a busy server would take
  # days. This array gets a floor of its own (RESYNC_FLOOR KiB/s, 0: md's).
  floor="/sys/block/md$i/md/sync_speed_min"
  [ "$RESYNC_FLOOR" -gt 0 ] 2>/dev/null && [ -w "$floor" ] && echo "$RESYNC_FLOOR" >"$floor"
  echo "md: active raid1 $(legs "$i")"
}

# bitmap_dirty DEVICE: "<dirty> <total> <chunk>" from the member's write-intent
# bitmap: what a re-add will resend.
bitmap_dirty() {
  mdadm -X "$1" 2>/dev/null | awk '/Chunksize :/ { chunk = $3 $4 }
    /Bitmap :/ { total = $3; dirty = $6 } END { if (total != "") print dirty, total, chunk }'
}

readd() {
  set -- "$1" "$2" $(bitmap_dirty "$2")
  echo "md: bitmap dirty $3 of $4 chunks of $5"
  if mdadm "/dev/md$1" --re-add "/dev/nbd$1" </dev/null >"$RUN/mdadm.log" 2>&1; then
    echo "md: re-added /dev/nbd$1"
  else
    echo "md: cannot re-add /dev/nbd$1: $(tail -n 1 "$RUN/mdadm.log")"
    return 1
  fi
}

# reconnect_leg INDEX DEVICE EXPORT: the failed leg leaves the array, then
# comes back (through the bitmap) when the link does.
reconnect_leg() {
  mdadm "/dev/md$1" --remove failed </dev/null >/dev/null 2>&1
  mdadm "/dev/md$1" --remove detached </dev/null >/dev/null 2>&1
  grep -q "nbd$1\[" /proc/mdstat && return 0
  nbd-client -d "/dev/nbd$1" </dev/null >/dev/null 2>&1
  connect "$1" "$3" && readd "$1" "$2" && eval "pending_$1=1"
}

# One look at one array: print what changed, re-add a failed leg.
watch_disk() {
  i=$1
  eval "last=\$last_$i progress_was=\$progress_$i pending=\$pending_$i"
  state=$(legs "$i")
  if [ "$state" != "$last" ]; then
    echo "md: active raid1 $state"
    eval "last_$i=\$state"
  fi
  now=$(progress "$i")
  [ -n "$now" ] && [ "$now" != "$progress_was" ] && echo "md: $now"
  eval "progress_$i=\$now"
  if [ -n "$pending" ] && whole "$i"; then
    echo "md: synced"
    eval "pending_$i="
    mark_clean "$i"
  fi
  [ "$state" = "[U_]" ] && reconnect_leg "$i" "$3" "$4"
  return 0
}

# whole INDEX: both members in and in sync, nothing to resync or rebuild.
# /proc/mdstat shows [UU] during an initial resync too, and sync_action reads
# idle for a moment after --create, before the resync starts: resync_start
# (md's recovery checkpoint) says "none" only once the array is in sync.
whole() {
  [ "$(legs "$1")" = "[UU]" ] || return 1
  [ "$(cat "/sys/block/md$1/md/sync_action" 2>/dev/null)" = idle ] || return 1
  [ "$(cat "/sys/block/md$1/md/resync_start" 2>/dev/null)" = none ] || return 1
  [ "$(cat "/sys/block/md$1/md/degraded" 2>/dev/null)" = 0 ]
}

# mark_clean INDEX: a whole, idle array writes "clean" to both legs' superblocks.
# md records that its members are in sync only when the array goes clean (no
# write for its safe-mode delay), which a busy server may never allow; the
# host cuts recovery points only once its leg's superblock has said so (and
# after its own restart, again). md refuses while writes are in flight: retry
# briefly, and leave it to the next report otherwise.
mark_clean() {
  i=$1
  whole "$i" || return 0
  n=0
  until echo clean 2>/dev/null >"/sys/block/md$i/md/array_state"; do
    n=$((n + 1))
    [ $n -ge 20 ] && return 0
    sleep 0.05
  done
  return 0
}

# ---- reports and commands --------------------------------------------------

# One "disk" line of the report.
report_disk() {
  i=$1
  state=$(legs "$i")
  if [ -z "$state" ]; then
    echo "disk $2 /dev/md$i - degraded - -"
    return 0
  fi
  action=$(cat "/sys/block/md$i/md/sync_action" 2>/dev/null)
  # A resync md has yet to start (right after --create) is one all the same.
  [ "$action" = idle ] && [ "$(cat "/sys/block/md$i/md/resync_start" 2>/dev/null)" != none ] && action=resync
  case "$action" in
    recover) action=recovery ;;
    resync | recovery) ;;
    *) action=idle ;;
  esac
  [ "$action" = idle ] && [ "$state" != "[UU]" ] && action=degraded
  percent=$(progress "$i" | awk '{ sub("%", "", $2); print $2 }')
  dirty=$(bitmap_dirty "$3" | awk '{ print $1 }')
  # md's event count tells the host this look from a superblock written later.
  events=$(mdadm --detail "/dev/md$i" 2>/dev/null | awk '$1 == "Events" { print $3 }')
  echo "disk $2 /dev/md$i $state $action ${percent:--} ${dirty:--} ${events:--}"
}

report_body() {
  echo "hostname $(hostname)"
  echo "version $VERSION"
  echo "state $1"
  for_each_disk report_disk
}

# report STATE: one report; the host's commands land in $RUN/commands.
report() {
  report_body "$1" >"$RUN/report"
  : >"$RUN/commands"
  if ! https_post "$AGENT" /v1/report "$RUN/report"; then
    echo "agent: report failed: $HTTP_ERROR"
    return 1
  fi
  if [ "$HTTP_STATUS" != 200 ]; then
    echo "agent: report failed: HTTP $HTTP_STATUS $(head -n 1 "$RUN/response.body")"
    return 1
  fi
  cp "$RUN/response.body" "$RUN/commands"
}

# failback_report PHASE COPIED TOTAL MS [WHY]: the recovery environment, with
# this server's own certificate, tells the host how the failback goes.
failback_report() {
  case "$1" in copying | done | failed) ;; *) usage ;; esac
  {
    echo "hostname $(hostname)"
    echo "version $VERSION"
    echo "state failback"
    echo "failback $*"
  } >"$RUN/report"
  https_post "$AGENT" /v1/report "$RUN/report" || die "failback report failed: $HTTP_ERROR"
  [ "$HTTP_STATUS" = 200 ] || die "failback report failed: HTTP $HTTP_STATUS $(head -n 1 "$RUN/response.body")"
}

stop_array() {
  mdadm --stop "/dev/md$1" </dev/null >/dev/null 2>&1
  nbd-client -d "/dev/nbd$1" </dev/null >/dev/null 2>&1
  return 0
}

# The ordered power-off: the host hears that the server stops, the workload
# stops writing, everything reaches both legs, md marks them clean.
shutdown_server() {
  echo "agent: shutdown requested"
  report stopping || report stopping
  [ -x "$STATE_DIR/hooks/stop-writes" ] && "$STATE_DIR/hooks/stop-writes"
  sync
  for_each_disk stop_array
  echo "agent: powering off"
  if [ -x "$STATE_DIR/hooks/poweroff" ]; then
    exec "$STATE_DIR/hooks/poweroff"
  fi
  exec poweroff
}

readd_disk() {
  [ "$2" = "$wanted" ] || return 0
  found=1
  reconnect_leg "$1" "$3" "$4"
}

obey() {
  while read -r command arg _; do
    case "$command" in
      shutdown) shutdown_server ;;
      readd)
        wanted=$arg found=
        for_each_disk readd_disk
        [ -n "$found" ] || echo "agent: readd names no disk of this server: $arg"
        ;;
      '') ;;
      *) echo "agent: unknown command from the host: $command" ;;
    esac
  done <"$RUN/commands.now"
}

# Seconds since boot (whole).
uptime_s() {
  read -r up _ </proc/uptime
  echo "${up%.*}"
}

# Until both legs are known equal: set at start and by every re-add.
mark_pending() {
  eval "pending_$1=1"
}

run() {
  for_each_disk mark_pending
  next=0
  while true; do
    for_each_disk watch_disk
    if [ "$(uptime_s)" -ge "$next" ]; then
      next=$(($(uptime_s) + REPORT))
      for_each_disk mark_clean
      # A failed report is retried at the next interval; the mirrors never wait on it.
      if report running; then
        cp "$RUN/commands" "$RUN/commands.now"
        obey
      fi
    fi
    sleep 1
  done
}

# ---- main ------------------------------------------------------------------

command=$1
[ $# -gt 0 ] && shift
case "$command" in
  enrol) enrol "$@" ;;
  setup | run | status)
    while [ $# -gt 0 ]; do
      case "$1" in
        --state-dir) [ $# -ge 2 ] || usage; STATE_DIR=$2; shift 2 ;;
        *) usage ;;
      esac
    done
    load_config
    case "$command" in
      setup)
        [ -e /sys/module/nbd ] || modprobe nbd 2>/dev/null
        for_each_disk setup_disk
        ;;
      run) run ;;
      status) report_body running ;;
    esac
    ;;
  failback-report)
    if [ "$1" = --state-dir ]; then
      [ $# -ge 2 ] || usage
      STATE_DIR=$2
      shift 2
    fi
    [ $# -ge 4 ] || usage
    load_config
    failback_report "$@"
    ;;
  *) usage ;;
esac
