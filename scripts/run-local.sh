#!/usr/bin/env bash
# The main job, locally: the RunPod worker against ./volume through the RunPod SDK's local API server
# (POST http://127.0.0.1:${PORT:-8000}/runsync with {"input": {"method": "GET", "path": "/health"}}).
# Without VOICEBOX_TTS_MODEL set, it uses (building them once) the tiny offline demo models: the worker runs with no
# network, and the audio it makes is NOISE (random weights). Set VOICEBOX_TTS_MODEL to a real repo after
# `voicebox-worker models prefetch REPO` (see docs/engines.md) for real speech.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh dev
export VOICEBOX_VOLUME=${VOICEBOX_VOLUME:-$PWD/volume}
export SERVERLESS=1
# The worker's own API listens on loopback inside it; any free port, so run-local.sh runs beside `serve` and the
# bridge (both on 17493 by default).
export VOICEBOX_PORT=${VOICEBOX_PORT:-0}
mkdir -p "$VOICEBOX_VOLUME"
if [ -z "${VOICEBOX_TTS_MODEL:-}" ]; then
  # A volume without the demo models copies the set scripts/setup-venv.sh prebuilt into the venv (or, without
  # it, builds them: offline, ~7 s) and reuses them on every later start.
  echo "run-local: no VOICEBOX_TTS_MODEL set -> tiny demo models (offline; the audio is noise)" >&2
  export VOICEBOX_TTS_MODEL=voicebox-demo/tiny-qwen3-tts-base
  export VOICEBOX_STT_MODEL=${VOICEBOX_STT_MODEL:-voicebox-demo/tiny-whisper}
  # prebuilt by scripts/setup-venv.sh: a fresh volume copies them instead of building them
  export VOICEBOX_DEMO_PREBUILT=${VOICEBOX_DEMO_PREBUILT:-$PWD/.venv/voicebox-demo-models}
fi
echo "run-local: talk to it with \`voicebox-worker remote --local ...\` or curl http://127.0.0.1:${PORT:-8000}/runsync" >&2
exec .venv/bin/python -u -m backend.serverless_handler --rp_serve_api \
  --rp_api_host 127.0.0.1 --rp_api_port "${PORT:-8000}" "$@"
