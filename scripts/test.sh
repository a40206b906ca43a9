#!/usr/bin/env bash
# Set up (scripts/setup.sh, without the index build of the app) and run the default test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` for the slow tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-index
# The llama.cpp engine's tests run the real library: built once from PyPI's source (~5 min).
bash scripts/install_llamacpp.sh
# The UI test drives a real headless browser: Debian's chromium (Playwright's own download needs a
# network we don't have). Installed when missing and we may (root); otherwise that test skips.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing chromium for the browser test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium install failed; the browser test will skip"
fi
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False ANONYMIZED_TELEMETRY=False
set +e
python -m pytest "$@"
rc=$?
set -e
# pytest exit 5 = no tests collected: that is a failure for us, not a pass.
exit $rc
