# PageLab in a container: docker build -t pagelab . && docker run -p 8000:8000 pagelab
# The image also carries the compiled core (mypyc); run it with -e PAGELAB_CORE=compiled.

# ---- stage 1: the compiled core, built from the same sources with mypyc and a C compiler
FROM python:3.11-slim AS core-compiled
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/pagelab
COPY pyproject.toml README.md ./
COPY app ./app
COPY bench ./bench
COPY tools ./tools
RUN pip install --no-cache-dir . mypy==2.4.1 setuptools==84.2.1 \
    && python tools/build_core.py

# ---- stage 2: the app (the Python source is the default core)
FROM python:3.11-slim
WORKDIR /srv/pagelab
COPY pyproject.toml README.md ./
COPY app ./app
COPY bench ./bench
COPY docs/*.md ./docs/
RUN pip install --no-cache-dir .
COPY --from=core-compiled /srv/pagelab/build/mypyc ./build/mypyc
ENV PAGELAB_DEFAULT_PRESET=teaching-1g
ENV PAGELAB_CORE=source
ENV PAGELAB_CORE_BUILD=/srv/pagelab/build/mypyc
EXPOSE 8000
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
