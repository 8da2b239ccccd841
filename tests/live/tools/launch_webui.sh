#!/usr/bin/env bash
# Start a local AUTOMATIC1111 WebUI (v1.10.1) offline on the CPU, bound to 127.0.0.1.
#
# Usage: launch_webui.sh [--webui DIR] [--port N] [--ui] [--ckpt NAME] [--threads N]
#                        [--log FILE] [--background] [--timeout S] [-- extra WebUI flags...]
#   --webui DIR    WebUI install (has webui.py, venv/, hf_home/); default $WEBUI_DIR or /work/webui
#   --port N       port; default 7861
#   --ui           also serve the Gradio UI (for browser tests); default is API only (--nowebui)
#   --ckpt NAME    checkpoint under models/Stable-diffusion/; default random-sd15.safetensors
#   --threads N    torch / OpenMP threads; default 1
#   --log FILE     with --background: where the output goes; default DIR/webui-PORT.log
#                  (an existing log is kept as FILE.1, replacing the previous FILE.1)
#   --background   start detached, print the PID, and wait until the WebUI has started:
#                  first for its "Startup time:" line in the log, only then for an answer
#                  to GET /sdapi/v1/sd-models (no request reaches it before that line)
#   --timeout S    with --background: give up waiting after S seconds; default 300
#                  (the WebUI is left running; exit status 1)
#
# The models and the Hugging Face cache come from make_random_models.py (same folder).
# Stop a background server with: kill <PID> (the PID is printed and written to DIR/webui-PORT.pid;
# the file is removed when the server exits, and a stale one is removed at the next start).
set -euo pipefail

WEBUI=${WEBUI_DIR:-/work/webui}
PORT=7861
UI=0
CKPT=random-sd15.safetensors
THREADS=1
LOG=
BACKGROUND=0
TIMEOUT=300
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --webui) WEBUI=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --ui) UI=1; shift ;;
    --ckpt) CKPT=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --log) LOG=$2; shift 2 ;;
    --background) BACKGROUND=1; shift ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

[[ $TIMEOUT =~ ^[0-9]+$ ]] || { echo "--timeout takes whole seconds, not '$TIMEOUT'" >&2; exit 2; }
WEBUI=$(cd "$WEBUI" && pwd)
PY=$WEBUI/venv/bin/python
CKPT_PATH=$WEBUI/models/Stable-diffusion/$CKPT
[[ -x $PY ]] || { echo "no venv python at $PY" >&2; exit 1; }
[[ -f $CKPT_PATH ]] || { echo "no checkpoint $CKPT_PATH: run make_random_models.py first" >&2; exit 1; }
[[ -d $WEBUI/hf_home/hub ]] || { echo "no HF cache in $WEBUI/hf_home: run make_random_models.py first" >&2; exit 1; }

export HF_HOME=$WEBUI/hf_home HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export GRADIO_ANALYTICS_ENABLED=False DO_NOT_TRACK=1
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
export PYTHONUNBUFFERED=1

FLAGS=(--api --server-name 127.0.0.1 --port "$PORT"
  --skip-prepare-environment --skip-install --skip-version-check --skip-python-version-check
  --skip-torch-cuda-test --use-cpu all --no-half --no-half-vae --precision full
  --disable-nan-check --no-download-sd-model --ckpt "$CKPT_PATH")
if [[ $UI = 0 ]]; then FLAGS+=(--nowebui); fi
FLAGS+=("${EXTRA[@]}")

cd "$WEBUI"
if [[ $BACKGROUND = 0 ]]; then
  exec "$PY" launch.py "${FLAGS[@]}"
fi

LOG=${LOG:-$WEBUI/webui-$PORT.log}
PIDFILE=$WEBUI/webui-$PORT.pid
if [[ -f $PIDFILE ]]; then
  OLD=$(cat "$PIDFILE" 2>/dev/null || true)
  if [[ $OLD =~ ^[0-9]+$ ]] && kill -0 "$OLD" 2>/dev/null && tr '\0' ' ' < "/proc/$OLD/cmdline" 2>/dev/null | grep -q launch.py; then
    echo "a WebUI is already running as PID $OLD ($PIDFILE); stop it first: kill $OLD" >&2; exit 1
  fi
  echo "removing stale $PIDFILE (PID ${OLD:-?} is gone)"; rm -f "$PIDFILE"
fi
if [[ -s $LOG ]]; then mv -f "$LOG" "$LOG.1"; echo "previous log kept as $LOG.1"; fi
# A small detached shell starts the WebUI, writes its PID and removes the PID file once the
# WebUI has exited (however it was stopped). The PID in the file is the WebUI's own.
export NR_PY=$PY NR_PIDFILE=$PIDFILE
setsid bash -c '"$NR_PY" launch.py "$@" & pid=$!; echo "$pid" > "$NR_PIDFILE"; wait "$pid"; rc=$?
  [[ "$(cat "$NR_PIDFILE" 2>/dev/null)" != "$pid" ]] || rm -f "$NR_PIDFILE"; exit "$rc"' \
  webui "${FLAGS[@]}" >"$LOG" 2>&1 < /dev/null &
for _ in $(seq 300); do [[ -s $PIDFILE ]] && break; sleep 0.1; done
PID=$(cat "$PIDFILE" 2>/dev/null || true)
[[ $PID =~ ^[0-9]+$ ]] || { echo "the WebUI did not start (no PID in $PIDFILE after 30 s); see $LOG" >&2; exit 1; }
echo "WebUI PID $PID, log $LOG"

# No HTTP request may reach the WebUI before it has printed "Startup time:". With --ui,
# webui.py starts serving at `shared.demo.launch(...)` (line 79) and adds the API's middleware
# afterwards: `initialize_util.setup_middleware(app)` (line 106) resets `app.middleware_stack`
# to None, then `create_api(app)` (line 112) -> `api_middleware` (modules/api/api.py:147,
# `@app.middleware("http")`) -> starlette's `add_middleware` (starlette 0.26.1,
# applications.py:138-139) raises "Cannot add middleware after an application has started"
# if any request came in meanwhile (`Starlette.__call__` builds the stack on the first
# request, applications.py:120-121), and the WebUI exits. "Startup time:" is printed after
# all of that (webui.py:122; with --nowebui, webui.py:40, just before the server starts).
waited() { echo $((SECONDS - START)); }
alive() {
  kill -0 "$PID" 2>/dev/null && return 0
  echo "WebUI exited after $(waited) s; see $LOG:" >&2; tail -20 "$LOG" >&2
  if grep -q 'Cannot add middleware after an application has started' "$LOG"; then
    echo "(something else sent it a request while it was still starting: see SETUP.md section 4)" >&2
  fi
  exit 1
}
START=$SECONDS
until grep -q '^Startup time: ' "$LOG" 2>/dev/null; do
  alive
  if (( $(waited) >= TIMEOUT )); then
    echo "no \"Startup time:\" line in $LOG after $TIMEOUT s; the WebUI is still running as PID $PID" >&2; exit 1
  fi
  sleep 0.5
done
echo "WebUI logged \"$(grep -m1 '^Startup time: ' "$LOG" | sed 's/ (.*//')\"; checking the API"
until curl -sf --noproxy '*' --max-time 10 "http://127.0.0.1:$PORT/sdapi/v1/sd-models" >/dev/null 2>&1; do
  alive
  if (( $(waited) >= TIMEOUT )); then
    echo "WebUI not answering on port $PORT after $TIMEOUT s; still running as PID $PID, see $LOG" >&2; exit 1
  fi
  sleep 0.5
done
echo "WebUI answering on http://127.0.0.1:$PORT (started in $(waited) s)"
