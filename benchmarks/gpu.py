"""``python -m benchmarks.gpu``: mmembed against open_clip's own pipeline, image files to vectors.

For each architecture, on the same image files and the same weights:

- **files, open_clip**: open_clip's eval ``preprocess`` (built from the model's own pretrained
  config: size, mean, std, interpolation) in a ``DataLoader`` with worker processes, then
  ``encode_image`` under ``torch.autocast(bfloat16)``, as an open_clip user runs it;
- **files, mmembed**: ``Embedder.encode(paths)`` with bf16 weights and the same number of
  worker processes: workers decode, the GPU resizes and normalises (the default on CUDA);
  then with PIL preprocessing in the workers (``preprocess_on="workers"``, open_clip's split
  of the work), with two model copies on one GPU (the several-device path), and with
  ``torch.compile``;
- **forward only**, both sides, on ready tensors.

Reports images/s, the ratio to open_clip's run of the same kind, MFU (FLOPs from
``torch.utils.flop_counter``, attention included), peak memory, and the cosine of every run's
vectors to open_clip in fp32. ``--smoke`` runs the whole path on the CPU in seconds (the test
suite runs it so the script cannot rot). On a GPU the default is one command, a few minutes:
``python -m benchmarks.gpu`` (ViT-B-32 and ViT-B-16, bf16, with and without torch.compile).
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

import mmembed

from . import data
from .output import write_json
from .timing import PeakRss

# Dense bf16 tensor-core peak (no sparsity), FLOP/s, by device name substring.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}


class ImageFiles(torch.utils.data.Dataset):
    """Paths -> open_clip-preprocessed tensors, as an open_clip user's DataLoader reads them."""

    def __init__(self, paths: list[str], preprocess: Callable):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            return self.preprocess(image.convert("RGB"))


def open_clip_preprocess(model: torch.nn.Module) -> Callable:
    """open_clip's eval transform from the model's pretrained config (per-architecture)."""
    cfg = PreprocessCfg(**open_clip.get_model_preprocess_cfg(model))
    return image_transform_v2(cfg, is_train=False)


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def flops_per_image(model: torch.nn.Module, pixels: torch.Tensor) -> float:
    """Forward FLOPs per image, attention included.

    The counter runs with grad enabled, which turns off ``nn.MultiheadAttention``'s fused
    inference kernel (the counter cannot see inside it). Attention's two matmuls (Q·Kᵀ and
    A·V, 4·N²·D FLOPs per layer) are added here: the counter has no formula for the CPU kernel.
    """
    with FlopCounterMode(display=False) as counter:
        model.encode_image(pixels)
    counts = counter.get_flop_counts()["Global"]
    dense = sum(v for op, v in counts.items() if "attention" not in str(op))
    visual = model.visual
    tokens = visual.positional_embedding.shape[0]  # patches + class token
    attention = 4 * visual.transformer.layers * tokens**2 * visual.transformer.width
    return dense / pixels.shape[0] + attention


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> dict:
    """Median seconds of ``repeats`` calls after one warm-up, peak memory, the last output."""
    fn()  # warm-up (and compilation)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with PeakRss() as rss:
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn()
            sync(device)
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else rss.peak
    return {"seconds": statistics.median(times), "peak_mb": peak / 2**20, "out": out}


def unit(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    tensor = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return torch.nn.functional.normalize(tensor.float().cpu(), dim=-1)


def benchmark_arch(arch: str, paths: list[str], args, device: torch.device) -> list[dict]:
    torch.manual_seed(0)
    fp32 = mmembed.load(f"open_clip:{arch}", device=device)
    model = fp32.towers["image"].model  # the open_clip model itself, fp32
    preprocess = open_clip_preprocess(model)
    preprocess_cfg = open_clip.get_model_preprocess_cfg(model)
    loader = torch.utils.data.DataLoader(
        ImageFiles(paths, preprocess),
        batch_size=args.batch_size,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
    )
    ours = copy.deepcopy(fp32).set_precision("bf16")
    ours.cfg.num_workers = args.workers  # the same CPU budget for decoding
    ours.cfg.preprocess_on = "device"  # the default on CUDA; the smoke run checks it on CPU
    pil_workers = copy.deepcopy(ours)
    pil_workers.cfg.preprocess_on = "workers"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    def open_clip_files(bf16: bool = True) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            outs = [model.encode_image(b.to(device, non_blocking=True)) for b in loader]
        return torch.cat(outs)

    pixels = torch.stack([ImageFiles(paths, preprocess)[i] for i in range(args.batch_size)])
    pixels = pixels.to(device)

    def open_clip_forward() -> torch.Tensor:
        with torch.inference_mode(), autocast:
            return model.encode_image(pixels)

    def mmembed_files(embedder, devices=None) -> Callable[[], np.ndarray]:
        return lambda: embedder.encode(
            paths, batch_size=args.batch_size, show_progress_bar=False, device=devices
        )

    def mmembed_forward(tower) -> Callable[[], torch.Tensor]:
        def run():
            with torch.inference_mode():
                return tower(pixels.to(torch.bfloat16))

        return run

    with torch.inference_mode():
        exact_files = unit(open_clip_files(bf16=False))
        exact_forward = unit(model.encode_image(pixels))
    runs = [  # (kind, name, function, fp32 vectors to compare with)
        (
            "files",
            "open_clip DataLoader + encode_image, bf16 autocast",
            open_clip_files,
            exact_files,
        ),
        ("files", "mmembed encode(paths), bf16", mmembed_files(ours), exact_files),
        (
            "files",
            "mmembed encode(paths), bf16, PIL preprocess in workers",
            mmembed_files(pil_workers),
            exact_files,
        ),
        (
            "files",
            "mmembed encode(paths), bf16, two model copies, one device",
            mmembed_files(ours, [device, device]),
            exact_files,
        ),
        ("forward", "open_clip encode_image, bf16 autocast", open_clip_forward, exact_forward),
        (
            "forward",
            "mmembed image tower, bf16",
            mmembed_forward(ours.towers["image"]),
            exact_forward,
        ),
    ]
    if args.compile:
        compiled = copy.deepcopy(ours)
        compiled.towers["image"] = torch.compile(compiled.towers["image"])
        runs.insert(
            4,
            (
                "files",
                "mmembed encode(paths), bf16 + torch.compile",
                mmembed_files(compiled),
                exact_files,
            ),
        )
        runs.append(
            (
                "forward",
                "mmembed image tower, bf16 + torch.compile",
                mmembed_forward(compiled.towers["image"]),
                exact_forward,
            )
        )

    flops = flops_per_image(model, pixels[:2])
    peak = peak_flops(device)
    rows, baseline = [], {}
    for kind, name, fn, exact in runs:
        result = timed(fn, device, args.repeats)
        items = len(paths) if kind == "files" else pixels.shape[0]
        rate = items / result["seconds"]
        baseline.setdefault(kind, rate)  # open_clip's run of each kind comes first
        rows.append(
            {
                "arch": arch,
                "kind": kind,
                "name": name,
                "images_per_s": rate,
                "ratio": rate / baseline[kind],
                "mfu": rate * flops / peak if peak else None,
                "peak_mb": result["peak_mb"],
                "cosine_to_fp32": float((unit(result["out"]) * exact).sum(dim=1).min()),
                "gflop_per_image": flops / 1e9,
            }
        )
    mean, std = preprocess_cfg["mean"], preprocess_cfg["std"]
    print(f"\n{arch}: {flops / 1e9:.2f} GFLOP/image; preprocess mean={mean} std={std}")
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [
        f"{'arch':9s} {'run':52s} {'images/s':>9s} {'ratio':>6s} {'MFU':>6s} {'peak MB':>8s} {'cos fp32':>8s}"
    ]
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else ""
        lines.append(
            f"{r['arch']:9s} {r['name'][:52]:52s} {r['images_per_s']:9.1f} {r['ratio']:5.2f}x "
            f"{mfu:>6s} {r['peak_mb']:8.0f} {r['cosine_to_fp32']:8.5f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--archs", nargs="+", default=["ViT-B-32", "ViT-B-16"])
    parser.add_argument("--files", type=int, default=4096, help="JPEG files (copies of the assets)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CPU, ViT-B-32, 16 files, 2 workers, no compile: the whole path in seconds",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.archs, args.files, args.batch_size = "cpu", ["ViT-B-32"], 16, 4
        args.workers, args.repeats, args.compile = 2, 1, False
    logging.basicConfig(level=logging.ERROR)
    device = torch.device(args.device)
    # fp32 references are true fp32 (no TF32 in matmuls or the patch-embedding conv).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    started = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        paths = data.photo_files(args.files, Path(folder))
        for arch in args.archs:
            rows += benchmark_arch(arch, paths, args, device)
            print(format_rows([r for r in rows if r["arch"] == arch]), flush=True)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    payload = {
        "device": device_name,
        "args": {k: str(v) for k, v in vars(args).items()},
        "torch": torch.__version__,
        "rows": rows,
        "wall_s": time.time() - started,
    }
    write_json(args.out, payload)
    print(f"\n{device_name}, {payload['wall_s']:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
