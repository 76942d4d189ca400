#!/usr/bin/env bash
# The whole test suite: install what is missing, then build and run every test in release mode
# (the numeric tests are tens of times slower in debug builds).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/install.sh
# Python's safetensors library checks that our checkpoints open as-is; the test skips without it.
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import safetensors, numpy" 2>/dev/null; then
    python3 -m pip install -q safetensors numpy 2>/dev/null || echo "note: python safetensors not installed; that interop test will skip"
fi
swift build -c release -Xswiftc -enable-testing --build-tests
swift test -c release -Xswiftc -enable-testing --skip-build "$@"
