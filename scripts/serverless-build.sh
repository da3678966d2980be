#!/usr/bin/env bash
# Build (and optionally push) the RunPod serverless image. Same interface as the template worker's script.
#   scripts/serverless-build.sh [--push] [--tag IMAGE] [--bake-models] [--target serverless|pod]
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${IMAGE:-voicebox-worker:latest}
PUSH=0
BAKE=0
TARGET=serverless
while [ $# -gt 0 ]; do
  case "$1" in
    --push) PUSH=1 ;;
    --tag) TAG=$2; shift ;;
    --bake-models) BAKE=1 ;;
    --target) TARGET=$2; shift ;;
    -h|--help) sed -n 2,3p "$0"; exit 0 ;;
    *) echo "serverless-build: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
docker build --platform linux/amd64 --target "$TARGET" --build-arg BAKE_MODELS="$BAKE" -t "$TAG" .
if [ "$PUSH" = 1 ]; then docker push "$TAG"; fi
echo "built $TAG (target $TARGET)"
