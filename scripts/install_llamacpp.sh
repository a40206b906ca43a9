#!/usr/bin/env bash
# Install the optional llama.cpp engine (AISLE_LLM=llamacpp): llama-cpp-python 0.3.36, built from
# its PyPI source for this CPU (PyPI has no Linux wheel of it), into the active or the project venv.
#
#   bash scripts/install_llamacpp.sh
#
# Cost: a C++ build of llama.cpp, 5 min 20 s on the 2-core dev box; the wheel is kept in
# $AISLE_WHEELS (default .aisle/wheels), so a re-install takes seconds. The build is for the
# machine it runs on (GGML_NATIVE): copy the wheel only to a machine with the same CPU features.
# Only the library is built (no llama.cpp tools, server, tests or curl).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.3.36
WHEELS=${AISLE_WHEELS:-.aisle/wheels}
if [ -z "${VIRTUAL_ENV:-}" ]; then
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
if python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
  exit 0  # installed already
fi
mkdir -p "$WHEELS"
if ! ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
  echo "== building llama-cpp-python $VERSION (a C++ build: about 5 minutes on 2 cores)"
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
  CMAKE_ARGS="-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    pip wheel -q --no-deps -w "$WHEELS" "llama-cpp-python==$VERSION"
fi
# Its Python dependencies: numpy, jinja2 and typing-extensions are in the lock; diskcache is pinned here.
pip install -q --no-deps diskcache==5.6.3 "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl
python -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__, 'installed')"
