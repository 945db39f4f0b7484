#!/usr/bin/env bash
# The Spark pipe-stage test: pytest and PySpark in a venv of their own (pinned in
# requirements.txt), against the release build of the command.
# Usage: tests/spark/run.sh [pytest args]; needs python3 with venv, and Java 17 (installed with
# apt-get when missing and possible).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"

if ! command -v java >/dev/null 2>&1; then
  echo "tests/spark: no java; trying apt-get install openjdk-17-jre-headless"
  if ! { apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; } >/dev/null 2>&1; then
    echo "tests/spark: FAILED: Java 17 is needed for Spark and could not be installed" \
      "(apt-get install openjdk-17-jre-headless); install it and run tests/spark/run.sh again" >&2
    exit 1
  fi
fi

venv="$root/target/spark-venv"
requirements="$root/tests/spark/requirements.txt"
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi

cargo build --release --features cli --bin parfetch
export PARFETCH="$root/target/release/parfetch"
export PYSPARK_PYTHON="$venv/bin/python"
export PYSPARK_DRIVER_PYTHON="$venv/bin/python"
exec "$venv/bin/python" -m pytest -q -s -p no:cacheprovider "$root/tests/spark" "$@"
