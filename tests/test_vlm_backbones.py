"""The zoo's newer VLM entries on tiny random weights: VLM2Vec-V2.0 and Qwen3-VL-Embedding.

Each entry is loaded as the zoo defines it (prompt style, instructions, image preparation),
with only its weights swapped for a tiny random checkpoint of the same family. The golden
strings are what each model's own reference code hands its processor:

* VLM2Vec-V2.0: ``process_input_text`` (TIGER-AI-Lab/VLM2Vec main 6e1e1d4,
  ``src/model/processor.py`` lines 650-673) for backbone ``qwen2_vl``: ``instruction + " " +
  text``, with ``"<|image_pad|> "`` in front when there is an image.
* Qwen3-VL-Embedding: ``Qwen3VLEmbedder.format_model_input`` + ``apply_chat_template``
  (QwenLM/Qwen3-VL-Embedding 8ce3aab, ``src/models/qwen3_vl_embedding.py``); the text query is
  the prompt its ``examples/embedding_vllm.ipynb`` prints, byte for byte.

Also here: Phi-3.5-V's one-line refusal, and what ``eval mmeb`` hands Qwen3-VL-Embedding for
MMEB-eval's joined rows (VLM2Vec-LLaVa-Next: ``test_llava_next.py``; MMEB_Test_Instruct rows:
``test_eval_instruct_rows.py``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from mmeb_official import write_golden_fixture
from PIL import Image
from skimage import data
from tiny_vlm import ProcessorSpy, build_tiny_qwen2_vl, build_tiny_qwen3_vl, load_as, spy_on

import mmembed
from mmembed.cli import main as cli_main
from mmembed.encoders.vlm_inputs import prepare_image
from mmembed.eval import MMEBOptions, evaluate_mmeb

CAT = Image.fromarray(data.chelsea())  # 451x300
COFFEE = Image.fromarray(data.coffee())  # 600x400
SMALL_VIDEO = mmembed.Video(
    [np.asarray(photo.resize((64, 48))) for photo in (CAT, COFFEE)], num_frames=2
)


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory):
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3-vl"))


@pytest.fixture(scope="module")
def v2(qwen2_dir):
    return load_as("VLM2Vec-V2.0", qwen2_dir)


@pytest.fixture(scope="module")
def qwen3(qwen3_dir):
    return load_as("Qwen3-VL-Embedding-2B", qwen3_dir)


# -- VLM2Vec-V2.0 --------------------------------------------------------------------------------


def test_vlm2vec_v2_prompts_are_process_input_texts(v2):
    # process_input_text(instruction, "qwen2_vl", text="a cat sitting on a sofa")
    spy = spy_on(v2, lambda: v2.encode_query("a cat sitting on a sofa"))
    assert spy.texts == [
        "Find me an everyday image that matches the given caption: a cat sitting on a sofa"
    ]
    # process_input_text(instruction, "qwen2_vl", text=question, add_image_token=True)
    question = mmembed.Document([mmembed.Image(CAT), "What is in the image?"])
    instruction = "Represent the given image with the following question:"
    spy = spy_on(v2, lambda: v2.encode(question, instruction=instruction))
    assert spy.texts == [
        "<|image_pad|> Represent the given image with the following question: What is in the image?"
    ]
    # a candidate image: process_input_text("Represent the given image.", text="", image token)
    spy = spy_on(v2, lambda: v2.encode_document(CAT))
    assert spy.texts == ["<|image_pad|> Represent the given image."]
    # a video query: process_input_text(instruction, "qwen2_vl", text, add_video_token=True)
    video = mmembed.Document([SMALL_VIDEO, "a cat, then coffee"])
    spy = spy_on(v2, lambda: v2.encode(video, instruction="Find the matching video:"))
    assert spy.texts == ["<|video_pad|> Find the matching video: a cat, then coffee"]


def test_vlm2vec_v2_resizes_in_the_processor(v2):
    """V2 evaluates with --resize_use_processor true: images reach the processor at their own
    size, bounded to [4*28*28, 1280*28*28] pixels there; only a side under 28 pixels is first
    squashed to 56x56 (Qwen2_VL_process_fn)."""
    spy = spy_on(v2, lambda: v2.encode(CAT))
    assert spy.images[0].size == CAT.size
    # 300x451 rounds to 308x448: 11x16 merged tokens of 2x2 patches of 14 pixels.
    assert spy.outputs["image_grid_thw"].tolist() == [[1, 22, 32]]
    size = v2.towers["sequence"].processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (4 * 28 * 28, 1280 * 28 * 28)
    thin = COFFEE.resize((20, 90))
    spy = spy_on(v2, lambda: v2.encode(thin))
    assert spy.images[0].size == (56, 56)


# -- Qwen3-VL-Embedding --------------------------------------------------------------------------

QWEN3_QUERY = (
    "<|im_start|>system\nRetrieve images or text relevant to the user's query.<|im_end|>\n"
    "<|im_start|>user\nA woman playing with her dog on a beach at sunset.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
QWEN3_IMAGE_QUESTION = (
    "<|im_start|>system\nAnswer the question about the image.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is in the image?"
    "<|im_end|>\n<|im_start|>assistant\n"
)
QWEN3_CANDIDATE = (
    "<|im_start|>system\nRepresent the user's input.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
    "<|im_start|>assistant\n"
)


@pytest.mark.parametrize("name", ["Qwen3-VL-Embedding-2B", "Qwen3-VL-Embedding-8B"])
def test_qwen3_vl_embedding_prompts_are_its_chat(name, qwen3_dir):
    embedder = load_as(name, qwen3_dir)
    query = "A woman playing with her dog on a beach at sunset."
    assert spy_on(embedder, lambda: embedder.encode_query(query)).texts == [QWEN3_QUERY]
    # The reference strips the instruction and adds a full stop when it ends without one.
    question = mmembed.Document([mmembed.Image(CAT), "What is in the image?"])
    instruction = "  Answer the question about the image "
    spy = spy_on(embedder, lambda: embedder.encode(question, instruction=instruction))
    assert spy.texts == [QWEN3_IMAGE_QUESTION]
    # A candidate has no instruction: the system message is the reference's default.
    assert spy_on(embedder, lambda: embedder.encode_document(CAT)).texts == [QWEN3_CANDIDATE]


def test_qwen3_vl_embedding_resizes_images_as_qwen_vl_utils(qwen3):
    """Each image reaches the processor as the reference's ``fetch_image`` makes it (same
    pixels), and the processor is told not to resize again."""
    from qwen_vl_utils import fetch_image

    bounds = {"min_pixels": 4 * 32 * 32, "max_pixels": 1800 * 32 * 32}
    for photo in (CAT, COFFEE.resize((20, 90)), CAT.convert("L")):
        spy = spy_on(qwen3, lambda photo=photo: qwen3.encode(photo))
        # the content entry Qwen3VLEmbedder.format_model_input writes for an image
        expected = fetch_image({"image": photo, **bounds}, image_patch_size=16)
        assert spy.images[0].size == expected.size
        assert np.array_equal(np.asarray(spy.images[0]), np.asarray(expected))
        assert spy.kwargs["do_resize"] is False
    # Over the pixel budget (too many tokens for a quick forward pass): the preparation alone.
    large = COFFEE.resize((3000, 1700))
    prepared = prepare_image(large, qwen3.towers["sequence"].image_prep)
    expected = fetch_image({"image": large, **bounds}, image_patch_size=16)
    assert prepared.size == expected.size == (1792, 992)  # 1,777,664 pixels
    assert np.array_equal(np.asarray(prepared), np.asarray(expected))


# -- MMEB prompts -----------------------------------------------------------------------------------


def qwen3_chat(system: str, user: str) -> str:
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_qwen3_vl_embedding_mmeb_prompts_and_the_warning(qwen3, v2, tmp_path):
    """What ``eval mmeb`` hands Qwen3-VL-Embedding for MMEB-eval's joined rows, and the
    report's warning (split rows: ``tests/test_eval_instruct_rows.py``).

    Its own MMEB code (QwenLM/Qwen3-VL-Embedding 8ce3aab, ``src/evaluation/mmeb_v2/data/
    datasets/image_cls_dataset.py``, ``image_t2i_eval.py``) writes text candidates as
    ``{"text": t}`` with no instruction: the default system message and the text alone, which
    is what reaches the processor here too. Its queries come from MMEB_Test_Instruct's split
    ``qry_inst`` / ``qry_text`` columns (instruction as the system message); MMEB-eval's rows
    join them, so here the instruction stays in the user message, and the report says so.
    """
    data = write_golden_fixture(tmp_path / "data")
    names = ["ImageNet-1K", "MSCOCO_t2i"]
    tower = qwen3.towers["sequence"]
    spy = ProcessorSpy(tower.processor)
    tower.processor = spy
    try:
        report = evaluate_mmeb(qwen3, data, names, tmp_path / "out", MMEBOptions(batch_size=8))
    finally:
        tower.processor = spy.processor
    default = "Represent the user's input."
    vision = "<|vision_start|><|image_pad|><|vision_end|>"
    for label in ("tabby cat", "espresso", "space shuttle"):  # the reference's own format
        assert qwen3_chat(default, label) in spy.texts
    # MMEB-eval's joined texts, in the user message (the reference splits them)
    assert qwen3_chat(default, f"{vision}\nRepresent the given image for classification\n") in (
        spy.texts
    )
    assert qwen3_chat(default, f"{vision}\nRepresent the given image.\n") in spy.texts
    (warning,) = [w for w in report.warnings if "MMEB_Test_Instruct" in w]
    assert "not comparable to its published ones" in warning and "\n" not in warning
    # VLM2Vec's prompts are the ones mmembed reproduces: no such warning
    other = evaluate_mmeb(v2, data, names[:1], tmp_path / "out-v2", MMEBOptions(batch_size=8))
    assert not any("MMEB_Test_Instruct" in w for w in other.warnings)


# -- load, encode, save, load ---------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["v2", "qwen3"])
def test_load_encode_save_load(fixture, request, tmp_path):
    embedder = request.getfixturevalue(fixture)
    items = [  # small photos: a few merged image tokens each
        "a cat on a sofa",
        CAT.resize((150, 100)),
        mmembed.Document(
            [mmembed.Image(COFFEE.resize((120, 80))), "a cup of coffee on a wooden table"]
        ),
        SMALL_VIDEO,
    ]
    before = embedder.encode_query(items)
    assert before.shape == (4, 32)
    assert np.allclose(np.linalg.norm(before, axis=1), 1.0, atol=1e-5)
    assert np.abs(before - embedder.encode(items)).max() > 1e-4  # the query instruction counts
    again = mmembed.load(str(embedder.save(tmp_path / "saved")))
    assert again.query_instruction == embedder.query_instruction
    assert again.towers["sequence"].cfg == dataclasses.replace(
        embedder.towers["sequence"].cfg, path=again.towers["sequence"].cfg.path, weights=False
    )
    assert np.array_equal(again.encode_query(items), before)


def test_qwen3_vl_embedding_prepares_videos_as_qwen_vl_utils(qwen3):
    """A video's frames reach the processor as the reference's ``fetch_video`` makes them from a
    frame list (same pixels, same metadata), after the video's vision span in the prompt."""
    from qwen_vl_utils import fetch_video

    frames = [np.asarray(Image.fromarray(a).resize((160, 120))) for a in (data.chelsea(),) * 2]
    frames.append(np.asarray(COFFEE.resize((160, 120))))  # an odd count: the last is repeated
    video = mmembed.Video(frames, num_frames=3)
    spy = spy_on(qwen3, lambda: qwen3.encode(mmembed.Document([video, "a cat, then coffee"])))
    assert spy.texts == [
        "<|im_start|>system\nRepresent the user's input.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|video_pad|><|vision_end|>a cat, then coffee<|im_end|>\n"
        "<|im_start|>assistant\n"
    ]
    # the content entry Qwen3VLEmbedder.format_model_input writes for a frame list
    content = {"type": "video", "video": [Image.fromarray(f) for f in frames]}
    content["total_pixels"] = 10 * 768 * 32 * 32
    (expected, metadata), _ = fetch_video(
        content, image_patch_size=16, return_video_sample_fps=True, return_video_metadata=True
    )
    (given,) = spy.kwargs["videos"]
    assert given.shape == expected.shape and torch.equal(given, expected)
    assert spy.kwargs["video_metadata"] == [metadata]
    assert spy.kwargs["do_sample_frames"] is False
    assert qwen3.encode(video).shape == (32,)


def test_a_qwen3_vl_folder_loads_with_its_chat_prompt(qwen3_dir):
    """A plain transformers Qwen3-VL folder: the family's prompt, the processor's resizing."""
    embedder = mmembed.load(str(qwen3_dir))
    spy = spy_on(embedder, lambda: embedder.encode_document(CAT))
    assert spy.texts == [QWEN3_CANDIDATE] and spy.images[0].size == CAT.size
    assert "do_resize" not in spy.kwargs


# -- Phi-3.5-V: refused, in one line -------------------------------------------------------------


def test_phi_3_5_v_is_refused_in_one_line(tmp_path, capsys):
    """VLM2Vec-Full and VLM2Vec-LoRA (Phi-3.5-V) by name, a phi3_v checkpoint folder, and
    ``eval mmeb`` on either: one line that says why, before anything is downloaded."""
    folder = tmp_path / "phi"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "phi3_v"}')
    for name in ("VLM2Vec-Full", "TIGER-Lab/VLM2Vec-LoRA", str(folder)):
        with pytest.raises(ValueError, match="Phi-3.5-V .* is not supported") as error:
            mmembed.load(name)
        assert "\n" not in str(error.value) and "trust_remote_code" in str(error.value)
    data = tmp_path / "data"
    write_golden_fixture(data)
    args = [
        "eval",
        "mmeb",
        "--model",
        "VLM2Vec-Full",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "out"),
    ]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmembed eval: --model 'VLM2Vec-Full': Phi-3.5-V") and "\n" not in err
