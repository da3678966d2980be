# syntax=docker/dockerfile:1.7
# voicebox-worker image: Debian bookworm's Python 3.11 (the Python CI tests on) with requirements.lock installed
# by scripts/install-deps.sh, the same script scripts/setup-venv.sh runs for CI. The one difference from CI is
# torch's build: PyPI's torch wheels for Linux x86_64 are the CUDA build (TORCH_CUDA below, checked at build)
# and bring their CUDA libraries as nvidia-* wheels, so the base needs no CUDA toolkit, only a host driver for
# CUDA >= TORCH_CUDA (.runpod/hub.json's allowedCudaVersions; tests/test_dockerfile.py checks both agree).
# scripts/rehearse-image.sh performs these steps in a debootstrap'ed bookworm root with CPU torch (CI runs it).
#   docker build -t voicebox-worker .                         # RunPod serverless (default target)
#   docker build --target pod -t voicebox-worker:pod .        # SERVERLESS=0: `voicebox-worker serve`
#   docker build --build-arg BAKE_MODELS=1 ...                # bake weights (endpoints without a volume)
FROM debian:bookworm-slim AS base
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH NUMBA_CACHE_DIR=/opt/numba-cache
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv libsndfile1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

FROM base AS app
# The CUDA release of PyPI's torch build (the only place it is named); TORCH_INDEX is for a CPU rehearsal.
ARG TORCH_CUDA=13.0
ARG TORCH_INDEX=
# WORKDIR stays off the volume: older runpod SDKs funnelled every job to one worker when it was on it.
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY scripts/install-deps.sh scripts/lockcheck.py ./scripts/
COPY backend/__init__.py ./backend/__init__.py
RUN scripts/install-deps.sh server
COPY backend ./backend
COPY migrations ./migrations
COPY volume_bootstrap ./volume_bootstrap
COPY bench ./bench
COPY handler.py ./
RUN pip install -q --no-deps . \
 && python scripts/lockcheck.py --extras server --torch-cuda "$TORCH_CUDA" \
 && python -m backend.engines.prewarm \
 && useradd --create-home --uid 1000 voicebox \
 && mkdir -p /runpod-volume /tmp/voicebox-local && chown voicebox /tmp/voicebox-local
ENV VOICEBOX_VOLUME=/runpod-volume \
    HF_HOME=/runpod-volume/huggingface \
    VOICEBOX_LOCAL_DIR=/tmp/voicebox-local \
    VOICEBOX_TTS_MODEL=Qwen/Qwen3-TTS-12Hz-1.7B-Base \
    VOICEBOX_STT_MODEL=openai/whisper-base
ARG BAKE_MODELS=0
# Baked weights live in the image's own HF cache; a volume's cache still wins when one is mounted.
RUN if [ "$BAKE_MODELS" = "1" ]; then \
      HF_HOME=/opt/hf python -c "from huggingface_hub import snapshot_download as d; import os; [d(r) for r in (os.environ['VOICEBOX_TTS_MODEL'], os.environ['VOICEBOX_STT_MODEL'])]"; \
    fi

FROM app AS pod
ENV SERVERLESS=0
EXPOSE 17493
USER 1000
CMD ["voicebox-worker", "serve", "--host", "0.0.0.0", "--port", "17493"]

FROM app AS serverless
ENV SERVERLESS=1
# RunPod mounts the network volume owned by root; the worker must be able to write it, so it stays root here.
CMD ["python", "-u", "handler.py"]
