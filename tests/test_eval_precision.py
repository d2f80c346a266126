"""``eval mmeb --precision``: the official runs are bf16 on a GPU; on the CPU a bf16 run of the
tiny Qwen2-VL stays within cosine 0.999 of fp32 on the golden MMEB items, and the report records
the precision it ran in."""

from __future__ import annotations

import numpy as np
import pytest
from mmeb_official import GOLDEN_ROWS, write_golden_fixture
from tiny_vlm import build_tiny_qwen2_vl

import mmembed
from mmembed.eval import MMEBOptions, evaluate_mmeb
from mmembed.eval.data import MediaRoots, load_examples, to_input

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_golden_fixture(tmp_path_factory.mktemp("golden"))


def test_bf16_vectors_stay_within_cosine_0999_of_fp32(tiny_dir, data_dir):
    roots = MediaRoots(data_dir / "eval_images", data_dir / "videos")
    items = []
    for dataset, _, _ in GOLDEN_ROWS:
        (example,) = load_examples([data_dir / f"{dataset}.jsonl"], dataset=dataset).examples
        items += [to_input(i, roots, "in_place") for i in (example.query, *example.candidates)]
    exact = mmembed.load(str(tiny_dir), precision="fp32").encode(items, batch_size=8)
    fast = mmembed.load(str(tiny_dir), precision="bf16").encode(items, batch_size=8)
    cosine = np.sum(np.asarray(exact) * np.asarray(fast), axis=1)
    print(f"bf16 vs fp32 on {len(items)} MMEB items: min cosine {cosine.min():.5f}")
    assert cosine.min() >= 0.999


def test_the_report_records_the_precision(tiny_dir, data_dir):
    options = MMEBOptions(device="cpu", precision="bf16", batch_size=4)
    report = evaluate_mmeb(str(tiny_dir), data_dir, ["ImageNet-1K", "OK-VQA"], options=options)
    assert {r.precision for r in report.datasets.values()} == {"bf16"}
    assert "Precision: bf16." in report.to_markdown()
    default = evaluate_mmeb(str(tiny_dir), data_dir, ["OK-VQA"], options=MMEBOptions(device="cpu"))
    assert default.datasets["OK-VQA"].precision == "fp32"  # fp32 on a CPU by default
