#!/usr/bin/env bash
# The main job: install what is missing, build in release mode, train the tutorial's model on
# Tiny Shakespeare, then print a 1000-character sample primed with "ROMEO: ".
# Extra arguments go to `charrnn train` (e.g. --epochs 1, --checkpoint-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/install.sh
swift build -c release
data=()
# Use the corpus at hand when there is one (this also works without internet); otherwise charrnn
# downloads it once into ~/.cache/charrnn and verifies its SHA-256.
if [ -z "${CHARRNN_DATA:-}" ] && [ -f ../shared/data/tinyshakespeare.txt ]; then
    data=(--data ../shared/data/tinyshakespeare.txt)
fi
checkpoints=checkpoints/quickstart-$(date +%Y%m%d-%H%M%S)
.build/release/charrnn train "${data[@]}" --checkpoint-dir "$checkpoints" "$@"
.build/release/charrnn generate --checkpoint "$checkpoints" --prime "ROMEO: " --length 1000
