# srebot container image.
#
#   docker build -t srebot .
#   docker run --rm -p 3000:3000 --read-only --tmpfs /tmp srebot
#
# Two stages: the builder installs the package and its dependencies into a
# virtualenv; the runtime stage copies only that venv onto a clean slim image.
# The image runs as uid 10001 and works with a read-only root filesystem: it
# writes only to /tmp (mount a tmpfs/emptyDir there) and to /data (the default
# SQLite database; use PostgreSQL via DATABASE_URL in production).

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------- builder ---
FROM python:${PYTHON_VERSION}-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what the wheel needs (see .dockerignore); tests and deploy files stay out.
COPY pyproject.toml README.md constraints.txt ./
COPY bot ./bot
COPY integrations ./integrations
COPY tools ./tools
COPY sessions ./sessions
COPY devtools ./devtools

# The runtime never writes bytecode (read-only root filesystem): compile it here.
RUN pip install --upgrade pip setuptools wheel \
 && pip install -c constraints.txt . \
 && pip check \
 && python -m compileall -q /opt/venv/lib

# ---------------------------------------------------------------- runtime ---
FROM python:${PYTHON_VERSION}-slim AS runtime

LABEL org.opencontainers.image.title="srebot" \
      org.opencontainers.image.description="Chat-ops SRE bot for Slack and Microsoft Teams" \
      org.opencontainers.image.source="https://github.com/example/srebot"

# Non-root user with a fixed uid/gid (matches runAsUser in deploy/kubernetes).
# HOME is /tmp so libraries that write caches or config under ~ keep working
# on a read-only root filesystem.
RUN groupadd --system --gid 10001 srebot \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
            --shell /usr/sbin/nologin srebot \
 && mkdir -p /data /etc/srebot \
 && chown 10001:10001 /data

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    TMPDIR=/tmp \
    PORT=3000 \
    SREBOT_LOG_FORMAT=json \
    DATABASE_URL=sqlite+aiosqlite:////data/srebot.db

WORKDIR /tmp
VOLUME ["/data"]
USER 10001:10001
EXPOSE 3000

# No curl in slim images: probe /healthz with the Python standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["srebot"]
CMD ["serve"]
