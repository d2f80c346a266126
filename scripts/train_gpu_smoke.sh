#!/usr/bin/env bash
# One short bf16 training of a recipe on a GPU, reporting samples/s: clip_realign's image
# stage on open_clip ViT-B-32 (random weights: nothing is downloaded) over the demo crops.
#
#   bash scripts/train_gpu_smoke.sh                      # on a CUDA machine
#   STEPS=3 BATCH=8 DEVICE=cpu bash scripts/train_gpu_smoke.sh   # a dry run anywhere
#
# Knobs (environment): ARCH (ViT-B-32), STEPS (30), BATCH (64, at most the 64 demo crops),
# CHUNK (16, GradCache chunk), PRECISION (bf16), DEVICE (cuda), WORK (a new temp folder),
# OUT (where smoke.json goes; default WORK). Prints the median samples/s after 5 warm-up steps.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${WORK:-$(mktemp -d)}"
OUT="${OUT:-$WORK}"
export ARCH="${ARCH:-ViT-B-32}" STEPS="${STEPS:-30}" BATCH="${BATCH:-64}" CHUNK="${CHUNK:-16}"
export PRECISION="${PRECISION:-bf16}" DEVICE="${DEVICE:-cuda}" WORK OUT
mkdir -p "$OUT"

python - <<'PY'
import os
from pathlib import Path

import yaml

work = Path(os.environ["WORK"])
config = yaml.safe_load(Path("configs/clip_realign_stage1.yaml").read_text())
options = config["task_options"]
config["init"] = f"open_clip:{os.environ['ARCH']}"  # random weights: a throughput smoke test
options["eval_images"]["path"] = str(work / "demo_heldout")
options["eval_captions"]["path"] = str(work / "demo_photos")
config["freeze"] = ["towers.text."]
config["data"]["path"] = str(work / "demo_crops")
config.update(
    output_dir=str(work / "run"),
    steps=int(os.environ["STEPS"]),
    batch_size=int(os.environ["BATCH"]),
    chunk_size=int(os.environ["CHUNK"]),
    precision=os.environ["PRECISION"],
    device=os.environ["DEVICE"],
    save_every=10_000,
    progress_bar=False,
    tensorboard=False,
)
(work / "smoke.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
PY

python -m mmembed.cli.train "$WORK/smoke.yaml"

python - <<'PY'
import json
import os
import statistics
from pathlib import Path

import torch

work, out = Path(os.environ["WORK"]), Path(os.environ["OUT"])
records = [json.loads(line) for line in (work / "run/metrics.jsonl").read_text().splitlines()]
steady = [r["samples_per_s"] for r in records[5:]] or [r["samples_per_s"] for r in records]
evaluation = json.loads((work / "run/eval.json").read_text())
report = {
    "recipe": "clip_realign stage image",
    "architecture": os.environ["ARCH"],
    "precision": os.environ["PRECISION"],
    "device": torch.cuda.get_device_name() if os.environ["DEVICE"] == "cuda" else "cpu",
    "batch_size": int(os.environ["BATCH"]),
    "chunk_size": int(os.environ["CHUNK"]),
    "steps": len(records),
    "samples_per_s_median": statistics.median(steady),
    "loss_first": records[0]["loss"],
    "loss_last": records[-1]["loss"],
    "eval": evaluation,
}
(out / "smoke.json").write_text(json.dumps(report, indent=2))
print(json.dumps(report, indent=2))
PY
