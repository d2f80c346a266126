#!/usr/bin/env bash
# Re-measure every CPU figure of the README "Speed" section and docs/benchmarks.md's CPU
# sections, on a quiet machine (each row records the load; busy rows are marked):
#   1. python -m benchmarks, every suite at the default thread count, plus 1-thread rows for
#      the MiniLM and ViT-B-32 suites, each suite in a child process of its own (a crash costs
#      that suite's rows, named in the file's "failed" list) -> benchmarks/results/cpu.json
#   2. sentence-transformers' ONNX, int8 and OpenVINO backends against mmembed's runtimes, in
#      their own venv (optimum pins transformers < 5) -> benchmarks/results/st_onnx.json
#   3. python -m benchmarks.profile_cpu: fp32 stages and session options -> profile_cpu.json
#   4. the markdown tables of the three files -> benchmarks/results/cpu_tables.md
# Usage: bash benchmarks/cpu_all.sh   (from the repository root, with the project's venv active)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
STVENV=${STVENV:-/tmp/stvenv}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
start=$(date +%s)

"$PYTHON" -m benchmarks --threads 1 --sweep-suites minilm image

if [ ! -x "$STVENV/bin/python" ]; then
  site=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$PYTHON" -m venv "$STVENV"
  "$STVENV/bin/pip" install -q "sentence-transformers[onnx,openvino]" datasets pillow tqdm pyyaml xxhash pandas
  "$STVENV/bin/pip" uninstall -q -y torch  # the project's torch, below, is the one timed
  echo "$site" > "$("$STVENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/zz_project.pth"
fi
"$STVENV/bin/python" -m benchmarks.st_onnx

"$PYTHON" -m benchmarks.profile_cpu

"$PYTHON" -m benchmarks.tables benchmarks/results/cpu.json benchmarks/results/st_onnx.json \
  benchmarks/results/profile_cpu.json \
  > benchmarks/results/cpu_tables.md
echo "cpu_all: $(( $(date +%s) - start )) s; tables in benchmarks/results/cpu_tables.md"
