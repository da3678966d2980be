# syntax=docker/dockerfile:1.7
# voicebox-worker image: CUDA runtime, a CUDA torch with the MATCHING torchaudio, the pinned stack of
# pyproject.toml, qwen-tts installed --no-deps (as scripts/setup-venv.sh does), libsndfile.
#   docker build -t voicebox-worker .                         # RunPod serverless (default target)
#   docker build --target pod -t voicebox-worker:pod .        # SERVERLESS=0: `voicebox-worker serve`
#   docker build --build-arg BAKE_MODELS=1 ...                # bake weights (endpoints without a volume)
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev libsndfile1 sox ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

FROM base AS deps
ARG TORCH_VERSION=2.7.1
ARG TORCHAUDIO_VERSION=2.7.1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
WORKDIR /build
COPY pyproject.toml README.md ./
COPY backend/__init__.py backend/__init__.py
RUN pip install --upgrade pip \
 && pip install "torch==${TORCH_VERSION}" "torchaudio==${TORCHAUDIO_VERSION}" --index-url "${TORCH_INDEX}" \
 && pip install "transformers==4.57.3" "accelerate==1.12.0" "huggingface_hub>=0.34,<1.0" \
      "runpod~=1.12" "fastapi>=0.115" "uvicorn>=0.30" "httpx>=0.27" "python-multipart>=0.0.9" \
      "pydantic>=2.7" "sqlalchemy>=2.0,<2.2" "alembic>=1.13" "filelock>=4.3" "numpy>=1.26" \
      "soundfile>=0.12" "librosa>=0.10" "einops>=0.7" "onnxruntime>=1.17" "sox>=1.5" "requests>=2.31" \
      "pedalboard>=0.9" \
 && pip install --no-deps "qwen-tts==0.1.1"

FROM base AS app
COPY --from=deps /opt/venv /opt/venv
# WORKDIR stays off the volume: older runpod SDKs funnelled every job to one worker when it was on it.
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend ./backend
COPY migrations ./migrations
COPY volume_bootstrap ./volume_bootstrap
COPY bench ./bench
RUN pip install --no-deps . \
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
CMD ["python", "-u", "-m", "backend.serverless_handler"]
