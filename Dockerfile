# One image for the API and the workers. CPU torch by default; build with
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
# for CUDA workers.
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    FASTARCHRANK_DATA_DIR=/data
WORKDIR /srv
RUN pip install --index-url ${TORCH_INDEX} "torch<=2.14.1" "torchvision<=0.29.1"
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY client ./client
RUN pip install ./client . && useradd --create-home --uid 1000 fastarchrank && mkdir -p /data && chown fastarchrank /data
USER fastarchrank
VOLUME ["/data"]
EXPOSE 8000
CMD ["fastarchrank", "serve", "--no-worker", "--host", "0.0.0.0", "--port", "8000"]
