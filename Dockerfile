# PageLab in a container (docs/deploy.md):
#   docker build -t pagelab .
#   docker run -d --name pagelab -p 8000:8000 -v pagelab-data:/data pagelab
#   docker logs pagelab          # the admin's token, printed once at the first start
# The container starts with the command `make run` runs outside it (python -m app.serve).
# It listens on every address, so it runs in token mode (accounts): app.serve refuses the
# open mode beyond loopback.  For a trial on your own machine only:
#   docker run -p 127.0.0.1:8000:8000 -e PAGELAB_AUTH=open -e PAGELAB_ALLOW_OPEN=1 pagelab
# The image also carries the compiled core (mypyc); run it with -e PAGELAB_CORE=compiled.
# Extra dependencies (an extra of pyproject.toml): --build-arg PAGELAB_EXTRAS=name.

# ---- stage 1: the browser page (web/), built by npm from its lock file
FROM node:20-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json web/.npmrc ./
RUN npm ci
COPY web/index.html web/vite.config.js ./
COPY web/src ./src
RUN npm run build

# ---- stage 2: the Python environment, a venv in /opt/venv
FROM python:3.11-slim AS python-env
ARG PAGELAB_EXTRAS=""
ENV PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /srv/pagelab
# the dependencies first, from pyproject.toml alone: a change to the source reuses this layer
COPY pyproject.toml README.md ./
COPY tools/requirements.py ./tools/
RUN python tools/requirements.py "$PAGELAB_EXTRAS" > /tmp/requirements.txt \
    && pip install --no-cache-dir --requirement /tmp/requirements.txt
COPY app ./app
COPY bench ./bench
# editable: the venv points at /srv/pagelab, the one copy of the source, which finds docs/
# and web/dist beside it as it does in a checkout; `pagelab` (the CLI) is on the PATH
RUN pip install --no-cache-dir --no-deps --editable .

# ---- stage 3: the compiled core, built from the same sources with mypyc and a C compiler
FROM python-env AS core-compiled
# Debian's gcc is the one of the base image's release; an exact version pin would break
# the build at the next point release of the base image (hadolint DL3008)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY tools ./tools
# the compiler's versions are the dev extra's pins (tests/deploy checks they agree)
RUN pip install --no-cache-dir mypy==2.4.1 setuptools==84.2.1 \
    && python tools/build_core.py

# ---- stage 4: the runtime: slim, no compiler, no node, not root
FROM python:3.11-slim AS runtime
RUN groupadd --system --gid 10001 pagelab \
    && useradd --system --uid 10001 --gid pagelab --create-home --shell /usr/sbin/nologin pagelab \
    && mkdir /data \
    && chown pagelab:pagelab /data
COPY --from=python-env /opt/venv /opt/venv
WORKDIR /srv/pagelab
COPY app ./app
COPY bench ./bench
COPY docs/*.md ./docs/
COPY --from=web /src/web/dist ./web/dist
COPY --from=core-compiled /srv/pagelab/build/mypyc ./build/mypyc
# the source is root's and read-only to the server; its bytecode is compiled once here
RUN /opt/venv/bin/python -m compileall -q app bench
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PORT=8000 \
    PAGELAB_AUTH=token \
    PAGELAB_DATABASE_URL=sqlite:////data/pagelab.db
# the database: instances, their journals and snapshots, accounts
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8000
# liveness only (GET /healthz); a load balancer asks GET /readyz.  The start period covers
# restoring the instances of a big database (the server answers once they are back); it
# is probed every 2 s meanwhile (Docker >= 25), so the container is healthy once it serves.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --start-interval=2s --retries=3 \
    CMD ["python", "-m", "app.healthcheck"]
CMD ["python", "-m", "app.serve", "--host", "0.0.0.0", "--port", "8000"]
