"""``python -m benchmarks.profile_cpu``: where fp32 CPU time goes, and what each ONNX Runtime
session option gives, on mmembed's text (MiniLM) and image (ViT-B-32) paths.

Per path: the stages of one ``encode`` (tokenising or preprocessing, the graph, the rest)
timed alone, then the plain export graph under each session option against mmembed's session
(``engines.ort_session``: all graph optimisations, spinning off, one inter-op thread), the
text graph with ONNX Runtime's transformer fusions, and the torch tower on the same batches
(what ``runtime="auto"`` races the export against), timed in turns on the same feeds, each
with its largest difference to the torch tower (must stay <= 1e-5). The "encode" row runs
the default runtime ("auto"). Default threads unless ``OMP_NUM_THREADS`` says otherwise; the
load is recorded (``benchmarks/load.py``). Prints a table and writes ``benchmarks/results/profile_cpu.json``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import mmembed

from . import data
from .__main__ import machine
from .load import LoadMonitor
from .output import write_json
from .timing import measure, measure_interleaved, ratio


def session_variants(model_file: Path, threads: int) -> dict[str, Callable[[], object]]:
    """mmembed's session and one change each: name -> builder of an ONNX Runtime session."""
    import onnxruntime as ort

    def build(change: Callable[[ort.SessionOptions], None] | None = None, spinning: str = "0"):
        def make():
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
            if change is not None:
                change(options)
            return ort.InferenceSession(
                str(model_file), options, providers=["CPUExecutionProvider"]
            )

        return make

    def extended(o):
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED

    def basic(o):
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC

    def parallel(o):
        o.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        o.inter_op_num_threads = threads

    def no_arena(o):
        o.enable_cpu_mem_arena = False

    return {
        "mmembed session (engines.ort_session)": build(),
        "+ spinning on": build(spinning="1"),
        "+ graph optimisation EXTENDED (not ALL)": build(extended),
        "+ graph optimisation BASIC": build(basic),
        "+ parallel execution, inter-op threads": build(parallel),
        "+ no memory arena": build(no_arena),
    }


def profile(
    path: str,
    feeds: list[dict],
    expected: np.ndarray,
    model_file: Path,
    repeats: int,
    torch_run: Callable[[], np.ndarray],
    fused_file: Path | None = None,
):
    """Rows for one path: each session variant (and IO binding) against mmembed's session on
    the plain export, the graph with ONNX Runtime's transformer fusions (``fused_file``, what
    mmembed's "onnx" runtime opens for BERT text towers, ``engines.fused_session``), and the
    torch tower on the same batches (what ``runtime="auto"`` races the export against)."""
    threads = torch.get_num_threads()
    sessions = {name: make() for name, make in session_variants(model_file, threads).items()}
    if fused_file is not None:
        fused = session_variants(fused_file, threads)["mmembed session (engines.ort_session)"]
        sessions["fused graph (onnxruntime.transformers optimiser)"] = fused()

    def run(session):
        return lambda: np.concatenate([session.run(["embedding"], f)[0] for f in feeds])

    runs = {name: run(s) for name, s in sessions.items()}
    base_name = next(iter(sessions))
    base = sessions[base_name]

    def io_binding():
        out = []
        for feed in feeds:
            binding = base.io_binding()
            for key, value in feed.items():
                binding.bind_cpu_input(key, value)
            binding.bind_output("embedding")
            base.run_with_iobinding(binding)
            out.append(binding.copy_outputs_to_cpu()[0])
        return np.concatenate(out)

    runs["+ IO binding"] = io_binding
    runs["torch forward (runtime='torch')"] = torch_run
    items = len(expected)
    timed = measure_interleaved(runs, items, repeats)
    rows = []
    for name, fn in runs.items():
        diff = float(np.abs(_unit(fn()) - _unit(expected)).max())  # unit rows, as encode gives
        extra = {} if name == base_name else {"reference": base_name}
        if extra:
            extra["ratio"] = ratio(timed[name], timed[base_name])
        rows.append({"suite": path, **timed[name].as_dict(), **extra, "max_abs_diff": diff})
    return rows


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def text_path(n: int, batch_size: int, repeats: int) -> list[dict]:
    model = mmembed.load("mmembed-mini")
    text = model.towers["text"]
    texts = data.TEXT_SETS["mixed"](n)
    encode = measure(
        "encode (all stages)",
        lambda: model.encode(texts, batch_size=batch_size, show_progress_bar=False),
        n,
        repeats,
    )
    order = np.argsort([len(t) for t in texts])  # encode sorts by length; so do these batches
    batches = [[texts[i] for i in order[s : s + batch_size]] for s in range(0, n, batch_size)]
    tokenize = measure(
        "tokenize (fast tokenizer, padded)", lambda: [text.tokenize(b) for b in batches], n, repeats
    )
    text.set_runtime("onnx")  # the export's session, whatever "auto" chose above
    with torch.inference_mode(), text.inference():
        session, inputs = text._active
    feeds = []
    for batch in batches:
        tokens = text.tokenize(batch)
        feeds.append({k: tokens[k].numpy() for k in inputs})
    tokenized = [text.tokenize(b) for b in batches]

    def torch_run() -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([_torch_text(text, t) for t in tokenized])

    expected = torch_run()
    opened = Path(session._model_path)  # the fused copy where the tower has one
    plain = opened.parent.with_name(opened.parent.name.removesuffix("-fused")) / opened.name
    fused = opened if opened != plain else None
    rows = [
        {"suite": "profile text MiniLM", **encode.as_dict()},
        {"suite": "profile text MiniLM", **tokenize.as_dict()},
    ]
    return rows + profile("profile text MiniLM", feeds, expected, plain, repeats, torch_run, fused)


def _torch_text(text, tokens: dict) -> np.ndarray:
    from mmembed.encoders.hf_text import pool

    hidden = text.model(**tokens).last_hidden_state
    return torch.nn.functional.normalize(
        pool(hidden, tokens["attention_mask"], text.pooling), dim=-1
    ).numpy()


def image_path(n: int, batch_size: int, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    model = mmembed.load("open_clip:ViT-B-32")
    tower = model.towers["image"]
    pil = data.photos(n)
    encode = measure(
        "encode (all stages, PIL in)",
        lambda: model.encode(pil, batch_size=batch_size, show_progress_bar=False),
        n,
        repeats,
    )
    preprocess = measure(
        "preprocess (open_clip transform)", lambda: [tower.preprocess(p) for p in pil], n, repeats
    )
    tower.set_runtime("onnx")  # the export's session, whatever "auto" chose above
    with torch.inference_mode(), tower.inference():
        session = tower._active
    pixels = torch.stack([tower.preprocess(p) for p in pil])
    feeds = [{"pixels": pixels[s : s + batch_size].numpy()} for s in range(0, n, batch_size)]

    def torch_run() -> np.ndarray:
        with torch.inference_mode():
            out = torch.cat([tower.model.encode_image(p) for p in pixels.split(batch_size)])
        return torch.nn.functional.normalize(out, dim=-1).numpy()

    expected = torch_run()
    rows = [
        {"suite": "profile image ViT-B-32", **encode.as_dict()},
        {"suite": "profile image ViT-B-32", **preprocess.as_dict()},
    ]
    return rows + profile(
        "profile image ViT-B-32", feeds, expected, Path(session._model_path), repeats, torch_run
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_cpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/profile_cpu.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    started = time.time()
    with LoadMonitor() as monitor:
        rows = text_path(args.texts, args.batch_size, args.repeats)
        rows += image_path(args.images, args.batch_size, args.repeats)
    load = {"threads": torch.get_num_threads(), **monitor.summary()}
    rows = [{**r, **load} for r in rows]
    from .__main__ import format_table

    print(format_table(rows), flush=True)
    report = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
    }
    report["wall_s"] = time.time() - started
    write_json(args.out, report)
    print(f"\n{len(rows)} rows in {report['wall_s']:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
