"""VLM2Vec-LLaVa-Next on tiny random weights: its prompts, image tokens and MMEB run.

The zoo entry is loaded as the zoo defines it, with only its weights swapped for a tiny
LLaVA-Next checkpoint built offline (CLIP vision tower, Mistral text model, Llama tokenizer;
``tests/tiny_vlm.py``). The expected side is VLM2Vec v1's code (TIGER-AI-Lab/VLM2Vec, branch
``v1`` = 28fdbdd), not mmembed's:

* text: MMEB's row text with ``<|image_1|>`` replaced by ``<image>`` in place
  (``src/dataset.py`` ``EvalDataset.__getitem__``; ``src/model_utils.py`` ``vlm_image_tokens``);
  the demo's prompts (``examples/llava_next/demo.py``) for plain use;
* image: squashed to 1344x1344 (``--image_resolution high`` in ``examples/llava_next/
  run_eval.sh``; ``src/dataset.py`` ``process_image``), then one processor call per item,
  ``processor(images=image, text=text)`` (``src/model_utils.py`` ``Llava_NEXT_process_fn``);
* image tokens: ``<image>`` expands to the anyres feature count of VLM2Vec's processor
  (``src/vlm_backbone/llava_next/processing_llava_next.py`` ``_get_number_of_features``),
  re-derived here from its steps;
* vector: the last token's final hidden state of the item alone, L2-normalised
  (``src/model.py`` ``encode_input`` and ``_pooling``), and V1's ``argmax == 0`` hit@1.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mmeb_official import (
    GOLDEN_ROWS,
    official_v1_hit_at_1,
    official_v1_predictions,
    write_golden_fixture,
)
from PIL import Image
from skimage import data
from tiny_vlm import (
    build_tiny_llava_next,
    load_as,
    spy_on,
    tiny_entry,
    tiny_llama_tokenizer,
)
from transformers import (
    AutoProcessor,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextProcessor,
)

import mmembed
from mmembed.cli import main as cli_main
from mmembed.errors import InputError
from mmembed.eval.data import MediaRoots, load_examples, to_input

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CAT = Image.fromarray(data.chelsea())  # 451x300
COFFEE = Image.fromarray(data.coffee())  # 600x400
NAME = "VLM2Vec-LLaVa-Next"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_llava_next(tmp_path_factory.mktemp("tiny-llava-next"))


@pytest.fixture(scope="module")
def llava(tiny_dir):
    return load_as(NAME, tiny_dir)


@pytest.fixture(scope="module")
def golden_dir(tmp_path_factory):
    return write_golden_fixture(tmp_path_factory.mktemp("golden"))


# -- VLM2Vec's image token count, step by step -------------------------------------------------


def best_resolution(height: int, width: int, pinpoints: list[list[int]]) -> tuple[int, int]:
    """The anyres grid an image is fitted to: most of its pixels kept, then least padding."""
    best, best_key = None, None
    for grid_height, grid_width in pinpoints:
        scale = min(grid_width / width, grid_height / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        key = (kept, -(grid_width * grid_height - kept))
        if best_key is None or key > best_key:
            best, best_key = (grid_height, grid_width), key
    return best


def llava_next_image_tokens(
    height: int, width: int, tile: int, patch: int, pinpoints: list[list[int]]
) -> int:
    """Tokens ``<image>`` stands for: the grid's features with the padding rows or columns
    cut, one newline per row, and the base tile (its class token dropped by "default")."""
    grid_height, grid_width = best_resolution(height, width, pinpoints)
    side = tile // patch
    rows, columns = side * (grid_height // tile), side * (grid_width // tile)
    if width / height > columns / rows:
        rows -= 2 * ((rows - height * columns // width) // 2)
    else:
        columns -= 2 * ((columns - width * rows // height) // 2)
    return rows * columns + rows + side * side


def test_the_formula_on_llava_v16s_geometry():
    """The real processor's geometry (336-pixel tiles, 14-pixel patches): an MMEB image,
    squashed to 1344x1344, fills the 672x672 grid: 48x48 features, 48 newlines, 576 base."""
    pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    assert llava_next_image_tokens(1344, 1344, 336, 14, pinpoints) == 2304 + 48 + 576
    # transformers' processor, set up as llava-v1.6's files set it, counts the same
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessor(
            size={"shortest_edge": 336},
            crop_size={"height": 336, "width": 336},
            image_grid_pinpoints=pinpoints,
        ),
        tokenizer=tiny_llama_tokenizer(),
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    for image in (CAT.resize((1344, 1344)), CAT, COFFEE.resize((200, 700))):
        ids = processor(images=image, text="<image>\nx", return_tensors="np")["input_ids"][0]
        width, height = image.size
        expected = llava_next_image_tokens(height, width, 336, 14, pinpoints)
        assert (ids == image_id).sum() == expected, image.size


# -- prompts -------------------------------------------------------------------------------------


def test_demo_prompts(llava):
    """``examples/llava_next/demo.py``: an image query with its instruction, text candidates
    as they are; mmembed's query and document instructions are V1's MMEB ones."""
    question = mmembed.Document([mmembed.Image(CAT), "What is in the image"])
    instruction = "Represent the given image with the following question:"
    spy = spy_on(llava, lambda: llava.encode(question, instruction=instruction))
    assert spy.texts == [
        "<image> Represent the given image with the following question: What is in the image"
    ]
    spy = spy_on(llava, lambda: llava.encode(["A cat and a dog", "A cat and a tiger"]))
    assert spy.texts == ["A cat and a dog", "A cat and a tiger"]
    spy = spy_on(llava, lambda: llava.encode_query("a cat sitting on a sofa"))
    assert spy.texts == [
        "Find me an everyday image that matches the given caption: a cat sitting on a sofa"
    ]
    spy = spy_on(llava, lambda: llava.encode_document(CAT))
    assert spy.texts == ["<image> Represent the given image."]


def test_mmeb_rows_reach_the_processor_as_vlm2vec_v1_gives_them(llava, tiny_dir, golden_dir):
    """For the 12 official-format rows: the text byte for byte, each image squashed to
    1344x1344, and the token ids of each item (BOS, the expanded ``<image>``, the text) equal
    to V1's own one-item processor call."""
    reference = AutoProcessor.from_pretrained(tiny_dir)
    image_id = reference.tokenizer.convert_tokens_to_ids("<image>")
    tokens = llava_next_image_tokens(
        1344, 1344, 28, 14, reference.image_processor.image_grid_pinpoints
    )
    roots = MediaRoots(golden_dir / "eval_images", golden_dir / "videos")
    checked = 0
    for dataset, _, _ in GOLDEN_ROWS:
        (example,) = load_examples([golden_dir / f"{dataset}.jsonl"], dataset=dataset).examples
        for item in dict.fromkeys([example.query, *example.candidates]):
            spy = spy_on(llava, lambda item=item: llava.encode(to_input(item, roots)))
            text = item.text.replace("<|image_1|>", "<image>")
            assert spy.texts == [text], dataset
            image = None
            if item.image:
                with Image.open(roots.images / item.image) as photo:
                    image = photo.resize((1344, 1344))
                assert [image.size for image in spy.images] == [(1344, 1344)]
                assert np.array_equal(np.asarray(spy.images[0]), np.asarray(image))
            ids = reference(images=image, text=text, return_tensors="np")["input_ids"][0]
            assert np.array_equal(spy.outputs["input_ids"][0].numpy(), ids), (dataset, text)
            assert ids[0] == reference.tokenizer.bos_token_id
            assert (ids == image_id).sum() == (tokens if item.image else 0)
            checked += 1
    assert checked == 41  # 12 queries + 30 candidates; one RefCOCO-Matching query is its positive


# -- vectors -------------------------------------------------------------------------------------


def test_load_encode_save_load(llava, tmp_path):
    items = [
        "a cat on a sofa",
        CAT.resize((150, 100)),
        mmembed.Document([mmembed.Image(COFFEE), "a cup of coffee on a wooden table"]),
    ]
    before = llava.encode_query(items)
    assert before.shape == (3, 32)
    assert np.allclose(np.linalg.norm(before, axis=1), 1.0, atol=1e-5)
    # padded on the right (the Llama tokenizer's own side is left): each item keeps its
    # positions, and a batch gives each item's vector alone
    mask = spy_on(llava, lambda: llava.encode(["a", "a cat on a sofa"])).outputs["attention_mask"]
    assert mask[:, 0].all() and not mask[:, -1].all()
    alone = np.stack([llava.encode_query([item])[0] for item in items])
    assert np.abs(before - alone).max() < 1e-5
    again = mmembed.load(str(llava.save(tmp_path / "saved")))
    assert again.towers["sequence"].cfg.backbone == "llava_next"
    assert again.query_instruction == llava.query_instruction
    assert np.array_equal(again.encode_query(items), before)


def test_a_video_is_refused_in_one_line(llava):
    clip = mmembed.Video([np.asarray(CAT.resize((64, 48)))] * 2, num_frames=2)
    with pytest.raises(InputError, match="does not read videos") as error:
        llava.encode(clip)
    assert "\n" not in str(error.value)


# -- mmembed eval mmeb ---------------------------------------------------------------------------


def v1_vector(model, processor, images_dir, text: str, image_path: str) -> np.ndarray:
    """VLM2Vec v1's vector of one item, computed outside mmembed."""
    text = text.replace("<|image_1|>", "<image>")
    image = None
    if image_path:
        with Image.open(images_dir / image_path) as photo:
            image = photo.resize((1344, 1344))
    inputs = processor(images=image, text=text, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states[-1]  # (1, L, D)
    vector = torch.nn.functional.normalize(hidden[0, -1], dim=-1)
    return vector.numpy().astype(np.float64)


def test_eval_mmeb_end_to_end(tiny_dir, golden_dir, tmp_path):
    """``mmembed eval mmeb --model VLM2Vec-LLaVa-Next`` (tiny weights) on the 12 golden rows:
    each dataset's hit@1 and top candidate equal V1's rule on vectors computed the V1 way."""
    names = [dataset for dataset, _, _ in GOLDEN_ROWS]
    out = tmp_path / "report"
    with tiny_entry(NAME, tiny_dir) as name:
        args = ["eval", "mmeb", "--model", name, "--data", golden_dir, "--datasets", *names]
        code = cli_main([str(arg) for arg in [*args, "--out", out, "--batch-size", 4]])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    model = LlavaNextForConditionalGeneration.from_pretrained(tiny_dir).eval()
    processor = AutoProcessor.from_pretrained(tiny_dir)
    images = golden_dir / "eval_images"
    cache: dict[tuple[str, str], np.ndarray] = {}

    def vector(text: str, image: str) -> np.ndarray:
        if (text, image) not in cache:
            cache[text, image] = v1_vector(model, processor, images, text, image)
        return cache[text, image]

    for dataset, _, row in GOLDEN_ROWS:
        result = report["datasets"][dataset]
        assert result["metric"] == "hit@1" and result["placeholders"] == "in_place"
        assert result["score"] == pytest.approx(official_v1_hit_at_1([row], vector)), dataset
        # the top candidate too, in V1's own prediction file format
        predicted = (out / f"{dataset}_pred.txt").read_text()
        assert predicted == "".join(official_v1_predictions([row], vector)), dataset
        # the winner is clear: a near tie would let float noise decide the hit
        query = vector(row["qry_text"], row["qry_img_path"])
        scores = sorted(
            vector(t, p) @ query for t, p in zip(row["tgt_text"], row["tgt_img_path"], strict=True)
        )
        assert scores[-1] - scores[-2] > 1e-4 or row["qry_img_path"] in row["tgt_img_path"]
