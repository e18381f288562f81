#!/usr/bin/env bash
# Installs, with apt-get, the servers and tools the test suite starts itself where they are missing:
# PostgreSQL (initdb/pg_ctl), redis-server, Chromium (playground test) and Node.js/npm (protocol audits).
# The suite never uses servers already running on this machine: it starts its own on free ports.
set -euo pipefail

missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  missing+=(postgresql)
fi
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "Installing ${missing[*]} with apt-get" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged services; the suite does not need them.
if [[ " ${missing[*]} " == *" postgresql "* ]]; then $SUDO service postgresql stop >/dev/null 2>&1 || true; fi
if [[ " ${missing[*]} " == *" redis-server "* ]]; then $SUDO service redis-server stop >/dev/null 2>&1 || true; fi
