# syntax=docker/dockerfile:1
# Three targets from one file:
#   api          the REST front end, no torch (~200 MB instead of several GB)
#   worker-cpu   a worker with CPU torch (the default target)
#   worker-cuda  a worker with the CUDA 13.0 torch wheel; needs an NVIDIA driver >= 580 on the host
#                and the NVIDIA container toolkit. The wheel index is checked at build time: if it
#                has no torch 2.14.1 the build fails instead of silently installing an older torch.
# Build one with e.g. `docker build --target worker-cuda -t fastarchrank:worker-cuda .`
# (docker compose picks the target per service, see docker-compose.yml).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS source
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 FASTARCHRANK_DATA_DIR=/data
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY client ./client
RUN useradd --create-home --uid 1000 fastarchrank && mkdir -p /data && chown fastarchrank /data

# The API never imports torch: install every dependency except torch/torchvision, then the project
# itself without resolving dependencies again.
FROM source AS api
RUN python - <<'PY' > /tmp/api-requirements.txt
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if not re.match(r"torch(vision)?\b", d)))
PY
RUN pip install -r /tmp/api-requirements.txt && pip install --no-deps . && pip install ./client \
    && python -c "import sys, app.main; assert 'torch' not in sys.modules, 'the API image must not need torch'"
USER fastarchrank
VOLUME ["/data"]
EXPOSE 8000
CMD ["fastarchrank", "serve", "--no-worker", "--host", "0.0.0.0", "--port", "8000"]

FROM source AS worker-cuda
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
RUN pip install --index-url ${TORCH_INDEX} "torch==2.14.1" "torchvision==0.29.1" && pip install ./client . \
    && python -c "import torch; assert torch.version.cuda, 'a CPU torch was installed into the CUDA image'"
USER fastarchrank
VOLUME ["/data"]
CMD ["fastarchrank", "worker", "--gpu", "0"]

# Last, so that a plain `docker build .` gives the CPU worker.
FROM source AS worker-cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url ${TORCH_INDEX} "torch==2.14.1" "torchvision==0.29.1" && pip install ./client .
USER fastarchrank
VOLUME ["/data"]
CMD ["fastarchrank", "worker", "--device", "cpu"]
