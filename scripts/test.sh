#!/usr/bin/env bash
# The project's test command, and CI's: .ci/run runs exactly this.
#
#   bash scripts/test.sh [--no-install] [--allow-missing=PARTS] [pytest arguments...]
#
# Installs what the tests need on a fresh Debian machine (Chromium when run as root,
# evtrack with its test extra, MLflow's own virtualenv, PostgreSQL's server binaries),
# checks that every part is there, runs ruff and mypy, then the test suite. A missing part
# (the MLflow venv, Chromium, Playwright, moto, PostgreSQL) FAILS the run; nothing is
# skipped silently. On a machine where a
# part cannot be had, opt out explicitly: --allow-missing=browser,mlflow (or the
# EVTRACK_TEST_ALLOW_MISSING variable; parts: mlflow, browser, s3, postgres, or all), and the
# tests that need it are reported as skipped. --no-install skips the installation
# steps (a development checkout that is already set up). Services the tests need (a
# moto S3 server and a PostgreSQL cluster on 127.0.0.1, evtrack servers) are started by
# the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
pytest_args=()
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    --allow-missing=*) export EVTRACK_TEST_ALLOW_MISSING="${arg#*=}" ;;
    *) pytest_args+=("$arg") ;;
  esac
done
allowed=",${EVTRACK_TEST_ALLOW_MISSING:-},"
wants() { [[ "$allowed" != *",$1,"* && "$allowed" != *",all,"* ]]; }

if [ "$install" = 1 ]; then
  if wants browser && [ "$(id -u)" = "0" ] && ! command -v chromium >/dev/null 2>&1; then
    echo "== installing chromium (browser tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  if wants postgres && [ "$(id -u)" = "0" ] && ! command -v initdb >/dev/null 2>&1 \
      && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "== installing postgresql (the PostgreSQL import test)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  echo "== installing evtrack with test extras"
  python -m pip install -q --disable-pip-version-check -e '.[test]'
  if wants mlflow; then
    echo "== building MLflow's virtualenv (once; cached)"
    python tests/mlflow_venv.py >/dev/null
  fi
fi

echo "== required parts"
python tests/required.py

echo "== ruff"
ruff check evtrack tests benchmarks examples
ruff format --check evtrack tests benchmarks examples

echo "== mypy"
python -m mypy evtrack

echo "== running the test suite"
python -m pytest ${pytest_args[@]+"${pytest_args[@]}"}
