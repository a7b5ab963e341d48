#!/usr/bin/env bash
# The SmolLM2-135M hypernetwork measured in the README: text that never overlaps the evaluation domains,
# then 55 minutes of training on CPU (the whole command, setup included, stays under 60 minutes).
# Usage: bash recipes/hypernet-smollm2.sh [OUTPUT_DIR] [MINUTES]
set -euo pipefail
out=${1:-results/hypernet/smollm2-55min}
minutes=${2:-55}
python -m transplant.eval.build_train_text
text_dir=${TRANSPLANT_CACHE:-$HOME/.cache/transplant}/train_text
time transplant hypernet train --base smollm2-135m --text "$text_dir"/*.txt --output "$out" --minutes "$minutes" --seed 0 --overwrite
