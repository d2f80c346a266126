"""``python -m benchmarks.gpu``: images/s and model FLOP utilisation against raw open_clip.

Runs the reference (open_clip's ``encode_image`` with bf16 weights) and mmembed's image tower
(bf16 weights, optionally ``torch.compile``) on the same device, weights and batches, and
counts FLOPs with ``torch.utils.flop_counter`` (attention included). ``--jpeg-dir`` adds a
files->vectors run that decodes JPEGs on the GPU with ``torchvision.io.decode_jpeg``.
On a machine without CUDA it runs on the CPU (``--device cpu``) as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import mmembed

# Dense bf16 tensor-core peak (no sparsity), FLOP/s, by device name substring.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def flops_per_item(fn, batch: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn(batch)
    return counter.get_total_flops() / batch.shape[0]


def images_per_s(fn, batch: torch.Tensor, steps: int) -> float:
    with torch.inference_mode():
        for _ in range(3):
            fn(batch)
        sync(batch.device)
        start = time.perf_counter()
        for _ in range(steps):
            fn(batch)
        sync(batch.device)
    return steps * batch.shape[0] / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_jpeg_pipeline(paths: list[str], tower, device: torch.device, batch_size: int, size: int):
    """Read bytes on the CPU, decode and resize on the GPU, then the tower: files -> vectors."""
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as F

    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073), device=device).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711), device=device).view(1, 3, 1, 1)

    def run():
        outputs = []
        for start in range(0, len(paths), batch_size):
            data = [read_file(p) for p in paths[start : start + batch_size]]
            images = decode_jpeg(data, device=device)
            resized = [F.center_crop(F.resize(im, size, antialias=True), size) for im in images]
            pixels = (torch.stack(resized).float() / 255 - mean) / std
            outputs.append(tower(pixels.to(torch.bfloat16)))
        sync(device)
        return outputs

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(tower)")
    parser.add_argument(
        "--jpeg-dir", type=Path, default=None, help="folder of JPEGs for GPU decode"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True

    torch.manual_seed(0)
    embedder = mmembed.load(f"open_clip:{args.arch}", device=device, precision="bf16")
    tower = embedder.towers["image"]
    reference = tower.model.encode_image  # the same bf16 open_clip model, called directly
    size = tower.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    batch = torch.randn(args.batch_size, 3, size, size, device=device, dtype=torch.bfloat16)

    flops = flops_per_item(reference, batch[:8])
    peak = peak_flops(device)
    rows = {"open_clip encode_image bf16": images_per_s(reference, batch, args.steps)}
    rows["mmembed image tower bf16"] = images_per_s(tower, batch, args.steps)
    if args.compile:
        compiled = torch.compile(
            tower, mode="max-autotune-no-cudagraphs" if device.type == "cuda" else "default"
        )
        rows["mmembed image tower bf16 + torch.compile"] = images_per_s(compiled, batch, args.steps)
    if args.jpeg_dir is not None and device.type == "cuda":
        paths = sorted(str(p) for p in args.jpeg_dir.glob("*.jpg"))
        run = gpu_jpeg_pipeline(paths, tower, device, args.batch_size, size)
        run()
        start = time.perf_counter()
        with torch.inference_mode():
            run()
        rows["files -> vectors, GPU JPEG decode"] = len(paths) / (time.perf_counter() - start)

    baseline = rows["open_clip encode_image bf16"]
    print(
        f"{args.arch} on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}: {flops / 1e9:.1f} GFLOP/image"
    )
    print(f"{'run':44s} {'images/s':>10s} {'ratio':>6s} {'MFU':>6s}")
    report = []
    for name, rate in rows.items():
        mfu = rate * flops / peak if peak else None
        print(f"{name:44s} {rate:10.1f} {rate / baseline:5.2f}x {f'{mfu:.1%}' if mfu else '':>6s}")
        report.append({"name": name, "images_per_s": rate, "ratio": rate / baseline, "mfu": mfu})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "arch": args.arch,
        "device": str(device),
        "gflop_per_image": flops / 1e9,
        "rows": report,
    }
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
