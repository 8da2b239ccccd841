#!/usr/bin/env bash
# Live check for launch_webui.sh --background (issue 24): start a real WebUI N times, send it
# a request the moment the launcher returns, and count the starts that killed it.
#
# Usage: check_starts.sh --webui DIR [--port N] [--starts N] [--launcher PATH] [-- launcher flags...]
#   --webui DIR      the WebUI install (SETUP.md); required
#   --port N         port; default 7869 (must be free: the check starts and stops its own server)
#   --starts N       how many starts; default 10
#   --launcher PATH  the launch script to check; default launch_webui.sh beside this file
#   -- FLAGS         passed on to the launcher, e.g. -- --ui (the case that raced)
#
# Each start: launcher --webui DIR --port N --background FLAGS; at once GET /sdapi/v1/sd-models;
# then the WebUI must still run and its log must not hold "Cannot add middleware after an
# application has started"; then it is stopped (kill PID; the PID file goes when it is gone).
# One line per start, a summary, exit status 1 if any start died or failed. The WebUI needs
# 5 GB of memory while it runs; one start takes 15-60 s on two cores.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
WEBUI=
PORT=7869
STARTS=10
LAUNCHER=$HERE/launch_webui.sh
FLAGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --webui) WEBUI=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --starts) STARTS=$2; shift 2 ;;
    --launcher) LAUNCHER=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; FLAGS=("$@"); break ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n $WEBUI ]] || { echo "--webui DIR is required (see --help)" >&2; exit 2; }
WEBUI=$(cd "$WEBUI" && pwd)
PIDFILE=$WEBUI/webui-$PORT.pid
LOG=$WEBUI/webui-$PORT.log
[[ ! -e $PIDFILE ]] || { echo "$PIDFILE exists: is a WebUI running on port $PORT? stop it first" >&2; exit 1; }

stop() {  # stop the WebUI of this start, if it runs, and wait until its PID file is gone
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]]; then kill "$pid" 2>/dev/null || true; fi
  for _ in $(seq 600); do [[ -e $PIDFILE ]] || return 0; sleep 0.1; done
  echo "the WebUI (PID $pid) did not stop within 60 s" >&2; exit 1
}
trap stop EXIT

bad=0
for i in $(seq "$STARTS"); do
  t0=$SECONDS
  set +e
  out=$("$LAUNCHER" --webui "$WEBUI" --port "$PORT" --background "${FLAGS[@]}" 2>&1)
  rc=$?
  code=$(curl -s --noproxy '*' --max-time 60 -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$PORT/sdapi/v1/sd-models")
  set -e
  sleep 2  # a WebUI that the request killed needs a moment to exit
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  alive=no
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then alive=yes; fi
  raced=no
  if grep -q 'Cannot add middleware after an application has started' "$LOG" 2>/dev/null; then raced=yes; fi
  startup=$(grep -m1 '^Startup time: ' "$LOG" 2>/dev/null | sed 's/^Startup time: //; s/ (.*//' || true)
  verdict=ok
  if [[ $rc != 0 || $code != 200 || $alive != yes || $raced != no ]]; then verdict=FAILED; bad=$((bad + 1)); fi
  echo "start $i: launcher exit $rc, first request HTTP $code, alive $alive, middleware error $raced," \
    "startup ${startup:-none}, $((SECONDS - t0)) s: $verdict"
  if [[ $verdict != ok ]]; then
    echo "$out" | tail -5 | sed 's/^/    launcher: /'
    cp "$LOG" "$LOG.failed-$i" 2>/dev/null && echo "    log kept as $LOG.failed-$i"
  fi
  stop
done
echo "$STARTS starts with ${FLAGS[*]:-no flags}: $bad failed"
[[ $bad = 0 ]]
