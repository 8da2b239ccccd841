#!/usr/bin/env bash
# Start a local ComfyUI (with AnimateDiff-Evolved) offline on the CPU, bound to 127.0.0.1.
#
# Usage: launch_comfyui.sh [PORT] [--comfyui DIR] [--threads N] [--foreground]
#                          [--stop] [--keep-logs N] [-- extra ComfyUI flags...]
#   PORT / --port N  port; default 8188
#   --comfyui DIR    install folder (has ComfyUI/ and venv/); default $COMFYUI_DIR or $HOME/comfyui
#   --threads N      torch / OpenMP threads; default 1
#   --foreground     run attached (Ctrl-C stops it); default: start detached, write the PID
#                    file, wait until GET /system_stats answers (up to 300 s), then return
#   --stop           stop the server started for PORT (SIGTERM, then SIGKILL after 20 s)
#   --keep-logs N    old logs kept per port (rotated to .log.1 … .log.N); default 3
#
# Files, per port: DIR/logs/comfyui-PORT.log (output), DIR/logs/comfyui-PORT.pid (PID).
# A stale PID file (process gone, or not this ComfyUI) is removed; if a server from the
# PID file still answers on PORT, nothing is started and the script exits 0.
# Models and custom nodes: see SETUP.md in this folder (nothing is downloaded).
set -euo pipefail

CDIR=${COMFYUI_DIR:-$HOME/comfyui}
PORT=8188
THREADS=1
FOREGROUND=0
STOP=0
KEEP=3
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --comfyui) CDIR=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --foreground) FOREGROUND=1; shift ;;
    --stop) STOP=1; shift ;;
    --keep-logs) KEEP=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    [0-9]*) PORT=$1; shift ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $PORT =~ ^[0-9]+$ ]] || { echo "bad port: $PORT" >&2; exit 2; }

CDIR=$(cd "$CDIR" && pwd)
PY=$CDIR/venv/bin/python
APP=$CDIR/ComfyUI
LOGDIR=$CDIR/logs
LOG=$LOGDIR/comfyui-$PORT.log
PIDF=$LOGDIR/comfyui-$PORT.pid
URL=http://127.0.0.1:$PORT
mkdir -p "$LOGDIR"

answers() { curl -sf --noproxy '*' --max-time 5 "$URL/system_stats" >/dev/null 2>&1; }
# PID from the file if that process is alive and is a ComfyUI main.py; else nothing
live_pid() {
  [[ -f $PIDF ]] || return 0
  local pid; pid=$(tr -dc '0-9' < "$PIDF")
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null \
     && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "main.py"; then
    echo "$pid"
  fi
}

PID=$(live_pid)
if [[ $STOP = 1 ]]; then
  if [[ -z $PID ]]; then echo "no ComfyUI running from $PIDF"; rm -f "$PIDF"; exit 0; fi
  kill "$PID"
  for _ in $(seq 20); do kill -0 "$PID" 2>/dev/null || break; sleep 1; done
  if kill -0 "$PID" 2>/dev/null; then kill -9 "$PID"; fi
  rm -f "$PIDF"; echo "stopped ComfyUI PID $PID"; exit 0
fi
if [[ -n $PID ]]; then
  if answers; then echo "ComfyUI already running as PID $PID on $URL (log $LOG)"; exit 0; fi
  echo "PID $PID from $PIDF is alive but $URL does not answer; stop it first: $0 $PORT --stop" >&2
  exit 1
fi
if [[ -f $PIDF ]]; then echo "removing stale PID file $PIDF"; rm -f "$PIDF"; fi
if answers; then echo "something else already answers on $URL; pick another port" >&2; exit 1; fi

[[ -x $PY ]] || { echo "no venv python at $PY" >&2; exit 1; }
[[ -f $APP/main.py ]] || { echo "no ComfyUI checkout at $APP" >&2; exit 1; }
ls "$APP"/models/checkpoints/*.safetensors >/dev/null 2>&1 \
  || echo "warning: no checkpoint in $APP/models/checkpoints (see SETUP.md, models)" >&2

# offline: nothing here may reach the network
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
export PYTHONUNBUFFERED=1

FLAGS=(--cpu --listen 127.0.0.1 --port "$PORT" --disable-auto-launch
  --preview-method none --disable-api-nodes)
FLAGS+=("${EXTRA[@]}")

cd "$APP"
if [[ $FOREGROUND = 1 ]]; then
  echo $$ > "$PIDF"
  exec "$PY" main.py "${FLAGS[@]}"
fi

# rotate: .log -> .log.1 -> … -> .log.KEEP
if [[ -f $LOG ]]; then
  for ((i = KEEP - 1; i >= 1; i--)); do [[ -f $LOG.$i ]] && mv -f "$LOG.$i" "$LOG.$((i + 1))"; done
  if (( KEEP >= 1 )); then mv -f "$LOG" "$LOG.1"; else rm -f "$LOG"; fi
fi
setsid "$PY" main.py "${FLAGS[@]}" >"$LOG" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$PIDF"
echo "ComfyUI PID $PID, log $LOG"
for _ in $(seq 300); do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "ComfyUI exited; see $LOG" >&2; tail -20 "$LOG" >&2; rm -f "$PIDF"; exit 1
  fi
  if answers; then echo "ComfyUI answering on $URL"; exit 0; fi
  sleep 1
done
echo "ComfyUI not answering after 300 s; still running as PID $PID, see $LOG" >&2
exit 1
