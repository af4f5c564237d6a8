# syntax=docker/dockerfile:1
# brushprint serving image. Two targets:
#   docker build --target gpu -t brushprint:gpu .   (NVIDIA CUDA 13 + cuDNN 9 runtime, onnxruntime-gpu 1.31; models/default)
#   docker build --target cpu -t brushprint:cpu .   (models/fast: the int8 backbone on 128-px crops, README "Which model")
# Dependencies come from pyproject.toml through the same `make venv-serve` that CI runs (.ci/run), so the
# image and CI cannot disagree about what serving installs. No TensorFlow in either image.

ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------- GPU ----------
FROM ${CUDA_IMAGE} AS gpu-base
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev make \
 && rm -rf /var/lib/apt/lists/*

FROM gpu-base AS gpu-build
WORKDIR /app
COPY pyproject.toml Makefile README.md ./
COPY contract ./contract
COPY service ./service
COPY training ./training
RUN make venv-serve VENV=/opt/venv ACCEL=gpu SERVE_EXTRAS=postgres

# ---------- CPU ----------
FROM ${PYTHON_IMAGE} AS cpu-base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*

FROM cpu-base AS cpu-build
WORKDIR /app
COPY pyproject.toml Makefile README.md ./
COPY contract ./contract
COPY service ./service
COPY training ./training
RUN make venv-serve VENV=/opt/venv ACCEL=cpu SERVE_EXTRAS=postgres PYTHON=python3

# ---------- runtime (shared steps) ----------
FROM gpu-base AS gpu
COPY --from=gpu-build /opt/venv /opt/venv
COPY --from=gpu-build /app /app
COPY models/default /app/models/default
RUN useradd --system --uid 10001 --home-dir /app brushprint \
 && mkdir -p /data && chown brushprint /data
USER brushprint
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    BRUSHPRINT_MODEL_DIR=/app/models/default \
    BRUSHPRINT_DATA_DIR=/data \
    BRUSHPRINT_HOST=0.0.0.0 \
    BRUSHPRINT_PORT=8000
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
CMD ["python3", "-m", "service"]

FROM cpu-base AS cpu
COPY --from=cpu-build /opt/venv /opt/venv
COPY --from=cpu-build /app /app
# both models: the fast one serves; the fp32 one stays for a deployment that still serves it (README "Which model")
COPY models/default /app/models/default
COPY models/fast /app/models/fast
RUN useradd --system --uid 10001 --home-dir /app brushprint \
 && mkdir -p /data && chown brushprint /data
USER brushprint
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    BRUSHPRINT_MODEL_DIR=/app/models/fast \
    BRUSHPRINT_DATA_DIR=/data \
    BRUSHPRINT_HOST=0.0.0.0 \
    BRUSHPRINT_PORT=8000
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
CMD ["python3", "-m", "service"]
