#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it.
# Used as-is by CI (.ci/run). Services the tests need (a moto S3 server on 127.0.0.1,
# evtrack servers) are started by the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = "0" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium (browser tests)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

echo "== installing evtrack with test extras"
python -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== running the test suite"
python -m pytest "$@"
