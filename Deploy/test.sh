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
# Runs' TensorBoard event files are read back with TensorBoard's own reader; the test skips without it.
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import tensorboard" 2>/dev/null; then
    python3 -m pip install -q tensorboard 2>/dev/null || echo "note: tensorboard not installed; the TensorBoard file test will skip"
fi
# tools/keras_sample.py is checked with real Keras on the JAX backend (CPU only, the smallest to install);
# the round-trip test skips without them.
if command -v python3 >/dev/null 2>&1 && ! KERAS_BACKEND=jax python3 -c "import keras, jax" 2>/dev/null; then
    python3 -m pip install -q keras "jax[cpu]" 2>/dev/null || echo "note: keras and jax not installed; the Keras round-trip test will skip"
fi
# `charrnn plot` makes its PNG with rsvg-convert; the plot test checks the PNG when it is there.
command -v rsvg-convert >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librsvg2-bin >/dev/null; } \
    || echo "note: librsvg2-bin not installed; charrnn plot will write SVG only"
# The Slurm test stands up a one-machine cluster with Debian's Slurm and munge; it skips without them.
if [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/munged ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; } \
        || echo "note: slurm-wlm and munge not installed; the Slurm test will skip"
fi
# The Kubernetes manifests are parsed with PyYAML and checked against the API's schemas offline.
if command -v python3 >/dev/null 2>&1 && ! { python3 -c "import yaml" 2>/dev/null && command -v kubernetes-validate >/dev/null 2>&1; }; then
    python3 -m pip install -q pyyaml kubernetes-validate 2>/dev/null || echo "note: kubernetes-validate not installed; manifests are checked less"
fi
swift build -c release -Xswiftc -enable-testing --build-tests
# Every test is XCTest; without Swift Testing's empty run the last line is XCTest's summary.
swift test -c release -Xswiftc -enable-testing --skip-build --disable-swift-testing "$@"
