# User-code image for scale-out (deploy/dagster.scale-out.yaml): the code location's gRPC server, and the
# image DockerRunLauncher starts each run in. Offline models come inside it (packages in the locked venv,
# Whisper base joined at build time); larger models can be mounted at HF_HOME.
#
#   docker build -t whisperx-assets .
#   docker run --gpus all -p 4000:4000 -e DAGSTER_POSTGRES_URL=... -e STORAGE_URL=s3://... whisperx-assets
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ffmpeg espeak-ng sox libsox-fmt-base \
 && rm -rf /var/lib/apt/lists/*

ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH \
    PYANNOTE_METRICS_ENABLED=0 \
    WHISPERX_ASSETS_CACHE=/opt/whisperx-assets-cache \
    STORAGE_URL=/data/storage \
    INBOX_URL=/data/inbox \
    HF_HOME=/data/hf

WORKDIR /app
RUN pip install --no-cache-dir uv
# Dependencies first (cached layer), exactly as locked.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY whisperx_assets ./whisperx_assets
COPY workspace.yaml dagster.yaml ./
RUN uv sync --frozen --no-dev \
 && python -c "from whisperx_assets.speech.models import resolve_whisper_model; from pathlib import Path; \
print(resolve_whisper_model('base', Path('/opt/whisperx-assets-cache')))"

EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "whisperx_assets.definitions"]
