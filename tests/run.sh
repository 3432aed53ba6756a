#!/usr/bin/env bash
# The test command of the README: makes sure the real services the tests use are there
# (PostgreSQL at 127.0.0.1:5432, the Prometheus, Alertmanager and VictoriaMetrics binaries), then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not answering at 127.0.0.1:5432 (trust auth, user postgres)" >&2; exit 1; }
fi

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null \
    || ! dpkg -s victoria-metrics >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager victoria-metrics >/dev/null
  else
    echo "the tests run a real Prometheus, Alertmanager and VictoriaMetrics:" \
      "apt-get install -y prometheus prometheus-alertmanager victoria-metrics" >&2
    exit 1
  fi
fi

exec .venv/bin/python -m pytest "$@"
