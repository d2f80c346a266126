#!/usr/bin/env bash
# The page tower's recipe on one GPU in under 10 minutes: configs/pixel_text_gpu.yaml
# (wider resnet, 2,000 steps x 128 varied pages, 12 page-drawing workers), then the
# unseen-font evaluation. Not run yet: no GPU was lent to the session that wrote it.
#
# A GPU machine has none of the Debian fonts and corpora the recipe reads, so pack them here
# first (about 35 MB; .git/info/exclude must list runs/), then carry the bundle:
#   bash scripts/train_pixel_gpu.sh pack                 # here: writes runs/pixel_bundle.tar.xz
#   bash scripts/train_pixel_gpu.sh                      # there: unpack, train, evaluate
# Knobs (environment): STEPS (2000), OUT (where eval.json and the tower go; default runs/).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=runs/pixel_bundle.tar.xz
CONFIG=configs/pixel_text_gpu.yaml

if [[ "${1:-}" == "pack" ]]; then
  mkdir -p runs
  # Every font folder the config names (training and held out), WordNet's data files, fortunes.
  folders=$(python - <<'PY'
import glob, os, yaml
options = yaml.safe_load(open("configs/pixel_text_gpu.yaml"))["task_options"]
print(" ".join(sorted({os.path.dirname(p) for g in options["fonts"] + options["held_out_fonts"] for p in glob.glob(g)})))
PY
)
  # shellcheck disable=SC2086
  tar -cJf "$BUNDLE" $folders /usr/share/wordnet/data.{noun,verb,adj,adv} /usr/share/games/fortunes
  ls -l "$BUNDLE"
  exit 0
fi

if [[ ! -d /usr/share/games/fortunes && -f "$BUNDLE" ]]; then
  tar -xJf "$BUNDLE" -C /   # paths inside are absolute folders under /usr/share
fi
OUT="${OUT:-runs}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python - <<PY
import yaml
config = yaml.safe_load(open("$CONFIG"))
config["steps"] = int("${STEPS:-2000}")
yaml.safe_dump(config, open("$OUT/pixel_text_gpu.yaml", "w"))
PY
start=$(date +%s)
mmembed train "$OUT/pixel_text_gpu.yaml"
echo "train wall seconds: $(( $(date +%s) - start ))"
python scripts/eval_pixel_tower.py --config "$OUT/pixel_text_gpu.yaml" --run --out "$OUT/eval_gpu.json"
