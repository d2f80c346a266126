"""Golden prompts: what the Qwen2-VL processor receives from ``mmembed eval mmeb`` equals what
VLM2Vec's own evaluation hands it, string and token ids, for 12 official-format rows.

The expected side follows VLM2Vec's code (TIGER-AI-Lab/VLM2Vec, ``v1`` = 28fdbdd,
``main`` = 6e1e1d4), not mmembed's:

* text: the row's text with ``<|image_1|>`` replaced by ``<|image_pad|>`` in place, nothing
  else touched (v1 ``src/dataset.py`` lines 127-132);
* image: squashed to 1344x1344 ("high", v1 ``src/dataset.py`` lines 16-29; main
  ``src/data/eval_dataset/base_eval_dataset.py`` lines 38-42 and
  ``src/data/collator/eval_collator.py`` lines 162-163, as ``eval_vlm2vecv1_8gpu.sh`` lines
  57-58 run it), then the processor with min 4*28*28 and max 1280*28*28 pixels (main
  ``src/arguments.py`` lines 45-46, ``src/model/processor.py`` lines 125-133);
* one processor call per item, ``processor(images=[image], text=[text])`` or
  ``processor(text=[text], images=None)`` (v1 ``src/model_utils.py`` lines 200-221).
"""

from __future__ import annotations

import numpy as np
import pytest
from mmeb_official import GOLDEN_ROWS, vlm2vec_text, write_golden_fixture
from PIL import Image as PILImage
from tiny_vlm import build_tiny_qwen2_vl

from mmembed.embedder import EmbedderCfg
from mmembed.encoders.vlm import VLMCfg
from mmembed.eval import MMEBOptions, evaluate_mmeb
from mmembed.eval.data import MediaRoots, RowItem, load_examples, to_input
from mmembed.models.families.vlm import vlm_embedder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OFFICIAL = {"image_resize": 1344, "min_pixels": 4 * 28 * 28, "max_pixels": 1280 * 28 * 28}


class RecordingProcessor:
    """Wraps the tower's processor and keeps every item it receives, unpadded."""

    def __init__(self, processor):
        self.processor = processor
        self.calls: list[tuple[str, list[int], list[list[int]]]] = []

    def __getattr__(self, name):
        return getattr(self.processor, name)

    def __call__(self, text, images=None, **kwargs):
        out = self.processor(text=text, images=images, **kwargs)
        grids = out["image_grid_thw"].tolist() if "image_grid_thw" in out else []
        grid_at = 0
        pad = self.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        for row, prompt in enumerate(text):
            mask = out["attention_mask"][row].bool()
            ids = out["input_ids"][row][mask].tolist()
            count = prompt.count("<|image_pad|>")
            self.calls.append((prompt, ids, grids[grid_at : grid_at + count]))
            grid_at += count
            assert ids.count(pad) >= count
        return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_golden_fixture(tmp_path_factory.mktemp("golden"))


@pytest.fixture(scope="module")
def embedder(tiny_dir):
    model = vlm_embedder(VLMCfg(path=str(tiny_dir), **OFFICIAL), EmbedderCfg("tiny-vlm2vec"))
    tower = model.towers["sequence"]
    tower.processor = RecordingProcessor(tower.processor)
    return model


def vlm2vec_inputs(processor, text: str, image_path: str | None) -> tuple[list[int], list]:
    """VLM2Vec's processing of one item: the token ids and the image grid."""
    text = vlm2vec_text(text)
    if image_path is None:
        out = processor(text=[text], images=None, return_tensors="np")
        return out["input_ids"][0].tolist(), []
    with PILImage.open(image_path) as image:
        image = image.resize((1344, 1344))
    out = processor(images=[image], text=[text], return_tensors="np")
    return out["input_ids"][0].tolist(), out["image_grid_thw"].tolist()


def test_twelve_rows_three_per_meta_task():
    tasks = [task for _, task, _ in GOLDEN_ROWS]
    assert len(GOLDEN_ROWS) == 12
    assert {task: tasks.count(task) for task in tasks} == dict.fromkeys(
        ["Classification", "VQA", "Retrieval", "Grounding"], 3
    )


def test_processor_receives_what_vlm2vec_gives_it(embedder, data_dir):
    recorder = embedder.towers["sequence"].processor
    reference = recorder.processor  # same files, same pixel bounds: VLM2Vec's processor
    roots = MediaRoots(data_dir / "eval_images", data_dir / "videos")
    checked = 0
    for dataset, _, _ in GOLDEN_ROWS:
        (example,) = load_examples([data_dir / f"{dataset}.jsonl"], dataset=dataset).examples
        items = list(dict.fromkeys([example.query, *example.candidates]))
        recorder.calls.clear()
        embedder.encode([to_input(item, roots, "in_place") for item in items], batch_size=4)
        received = {prompt: (ids, grids) for prompt, ids, grids in recorder.calls}
        assert len(recorder.calls) == len(items), dataset
        for item in items:
            expected_text = vlm2vec_text(item.text)
            assert expected_text in received, (dataset, expected_text)
            image = str(roots.images / item.image) if item.image else None
            ids, grids = vlm2vec_inputs(reference, item.text, image)
            assert received[expected_text] == (ids, grids), (dataset, expected_text)
            checked += 1
    assert checked == 41  # 12 queries + 30 candidates; one RefCOCO-Matching query is its positive


def test_official_strings_reach_the_processor_byte_for_byte(embedder, data_dir):
    """Spot checks written out by hand: the newlines stay, nothing is added or stripped."""
    recorder = embedder.towers["sequence"].processor
    roots = MediaRoots(data_dir / "eval_images", data_dir / "videos")
    recorder.calls.clear()
    items = [
        RowItem(
            "<|image_1|>\nRepresent the given image for classification\n", "ImageNet-1K/cat.jpg"
        ),
        RowItem(
            "<|image_1|>\nRepresent the given cropped image of the object", "MSCOCO/coffee.jpg"
        ),
        RowItem("Find me an everyday image that matches the given caption: A cat.\n"),
    ]
    embedder.encode([to_input(item, roots, "in_place") for item in items], batch_size=4)
    prompts = sorted(prompt for prompt, _, _ in recorder.calls)
    assert prompts == sorted(
        [
            "<|image_pad|>\nRepresent the given image for classification\n",
            "<|image_pad|>\nRepresent the given cropped image of the object",
            "Find me an everyday image that matches the given caption: A cat.\n",
        ]
    )
    # 1344x1344 -> 980x980 within 1280*28*28 pixels -> a 70x70 patch grid
    grids = [grid for _, _, grid in recorder.calls if grid]
    assert grids == [[[1, 70, 70]], [[1, 70, 70]]]


def test_harness_picks_in_place_for_vlm_towers(embedder, data_dir):
    recorder = embedder.towers["sequence"].processor
    recorder.calls.clear()
    report = evaluate_mmeb(embedder, data_dir, ["ImageNet-1K"], options=MMEBOptions())
    assert report.datasets["ImageNet-1K"].placeholders == "in_place"
    prompts = [prompt for prompt, _, _ in recorder.calls]
    assert "<|image_pad|>\nRepresent the given image for classification\n" in prompts
    assert np.isfinite(report.datasets["ImageNet-1K"].score)
