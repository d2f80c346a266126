"""MMEB_Test_Instruct rows (the instruction in its own column), as both references read them.

Expected strings are written by hand from each reference's code:

* VLM2Vec-V2 (TIGER-AI-Lab/VLM2Vec main 6e1e1d4, ``src/data/eval_dataset/image_cls_dataset.py``,
  ``image_qa_dataset.py``, ``image_i2t_eval.py``, ``image_t2i_eval.py``,
  ``image_i2i_vg_dataset.py``, ``data_prepare``): rebuilds MMEB-eval's joined strings, so the
  split rows below must give the golden rows' texts (``tests/mmeb_official.py``) exactly;
* Qwen3-VL-Embedding (QwenLM/Qwen3-VL-Embedding 8ce3aab, ``src/evaluation/mmeb_v2/data/
  datasets/image_*.py`` with ``Qwen3VLEmbedder.format_model_input``): the instruction,
  ``<|image_1|>`` removed and stripped (a full stop added when it ends without punctuation), as
  the system message; the query text alone; candidates with the default system message, text
  candidates as they are, image candidates with their caption only (stripped for t2i sets).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from mmeb_official import GOLDEN_ROWS, copy_photos
from tiny_vlm import ProcessorSpy, build_tiny_qwen2_vl, build_tiny_qwen3_vl, load_as

from mmembed.eval import MMEBOptions, evaluate_mmeb
from mmembed.eval.data import DataError, load_examples

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMG = "<|image_1|>"
GOLDEN = {dataset: row for dataset, _, row in GOLDEN_ROWS}

# The golden rows as MMEB_Test_Instruct keeps them: instruction and text apart.
SPLIT_ROWS = {
    "ImageNet-1K": {
        "qry_inst": f"{IMG}\nRepresent the given image for classification",
        "qry_text": "",
    },
    "N24News": {
        "qry_inst": f"{IMG}\nRepresent the given news image with the following caption for "
        "domain classification:",
        "qry_text": "An orange dahlia at the summer flower show.",
    },
    "OK-VQA": {
        "qry_inst": f"{IMG} Represent the given image with the following question: ",
        "qry_text": "What drink is served in this cup?",
    },
    "MSCOCO_i2t": {
        "qry_inst": f"{IMG}\nFind an image caption describing the given everyday image.",
        "qry_text": "",
    },
    "MSCOCO_t2i": {
        "qry_inst": "Find me an everyday image that matches the given caption:",
        "qry_text": "A cup of espresso coffee on a red saucer.",
        "tgt_inst": f"{IMG}\nRepresent the given image.",
        "tgt_text": ["", "", ""],
    },
    "WebQA": {
        "qry_inst": "Find a Wikipedia image that answers this question:",
        "qry_text": "What colour is the pagoda's roof?",
        "tgt_inst": f"{IMG}\nRepresent the given Wikipedia image with related text information:",
        "tgt_text": ["Pagoda above the West Lake.", "A dahlia in bloom."],
    },
    "MSCOCO": {
        "qry_inst": f"{IMG}\nSelect the portion of the image that isolates the object labeled as",
        "qry_text": '"cat"',
        "tgt_inst": f"{IMG}\nRepresent the given cropped image of the object",
        "tgt_text": ["", ""],
    },
    "RefCOCO-Matching": {
        "qry_inst": f"{IMG}\nSelect the portion of the image that follows the language "
        "expressions:",
        "qry_text": '"the rocket"',
        "tgt_inst": f"{IMG}\nSelect the portion of the image that follows the language "
        "expressions:",
        "tgt_text": ['"the rocket"', '"the lake"'],
    },
}


def write_split_fixture(folder):
    """The rows above as ``<dataset>.jsonl`` (other fields from the golden rows) and images."""
    for dataset, fields in SPLIT_ROWS.items():
        row = {**GOLDEN[dataset], **fields}
        copy_photos(folder / "eval_images", dataset)
        (folder / f"{dataset}.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    return write_split_fixture(tmp_path_factory.mktemp("split"))


@pytest.fixture(scope="module")
def joined_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("joined")
    for dataset in SPLIT_ROWS:
        copy_photos(folder / "eval_images", dataset)
        (folder / f"{dataset}.jsonl").write_text(json.dumps(GOLDEN[dataset]) + "\n")
    return folder


def test_vlm2vec_v2_rebuilds_mmeb_evals_joined_texts(split_dir):
    for dataset in SPLIT_ROWS:
        (example,) = load_examples([split_dir / f"{dataset}.jsonl"], dataset=dataset).examples
        golden = GOLDEN[dataset]
        assert example.query.text == golden["qry_text"], dataset
        assert example.query.image == golden["qry_img_path"], dataset
        assert [c.text for c in example.candidates] == golden["tgt_text"], dataset
        assert [c.image for c in example.candidates] == golden["tgt_img_path"], dataset


def test_a_split_row_of_an_unknown_set_is_an_error_naming_it(tmp_path):
    path = tmp_path / "Mystery.jsonl"
    path.write_text(json.dumps({**GOLDEN["ImageNet-1K"], **SPLIT_ROWS["ImageNet-1K"]}) + "\n")
    with pytest.raises(DataError, match=r"Mystery: .*row 0: field 'qry_inst': no MMEB_Test"):
        load_examples([path], dataset="Mystery")


def chat(system: str, user: str) -> str:
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


VISION = "<|vision_start|><|image_pad|><|vision_end|>"
DEFAULT = "Represent the user's input."


def run_with_spy(embedder, data_dir, names, out):
    tower = embedder.towers["sequence"]
    spy = ProcessorSpy(tower.processor)
    tower.processor = spy
    try:
        report = evaluate_mmeb(embedder, data_dir, names, out, MMEBOptions(batch_size=8))
    finally:
        tower.processor = spy.processor
    return report, spy


def test_qwen3_vl_embedding_reads_split_rows_as_its_mmeb_code(tmp_path, split_dir, joined_dir):
    qwen3 = load_as("Qwen3-VL-Embedding-2B", build_tiny_qwen3_vl(tmp_path / "tiny"))
    names = ["ImageNet-1K", "OK-VQA", "MSCOCO_t2i", "WebQA", "RefCOCO-Matching"]
    report, spy = run_with_spy(qwen3, split_dir, names, tmp_path / "out")
    expected = [
        chat("Represent the given image for classification.", VISION),
        chat(
            "Represent the given image with the following question:",
            VISION + "What drink is served in this cup?",
        ),
        chat(DEFAULT, "tabby cat"),
        chat(
            "Find me an everyday image that matches the given caption:",
            "A cup of espresso coffee on a red saucer.",
        ),
        chat(DEFAULT, VISION),  # a t2i candidate without caption: the image alone
        chat(DEFAULT, VISION + "Pagoda above the West Lake."),
        chat(
            "Select the portion of the image that follows the language expressions:",
            VISION + '"the rocket"',
        ),
        chat(DEFAULT, VISION + '"the lake"'),
    ]
    for prompt in expected:
        assert prompt in spy.texts, prompt
    assert not any("Represent the given image.\n" in text for text in spy.texts)
    assert {result.placeholders for result in report.datasets.values()} == {"split"}
    assert not any("MMEB_Test_Instruct" in warning for warning in report.warnings)
    # MMEB-eval's joined rows: read as they are, and the report says what that means
    joined, _ = run_with_spy(qwen3, joined_dir, names[:2], tmp_path / "out-joined")
    assert {result.placeholders for result in joined.datasets.values()} == {"in_place"}
    (warning,) = [w for w in joined.warnings if "MMEB_Test_Instruct" in w]
    assert "ImageNet-1K, OK-VQA" in warning and "not comparable" in warning


def test_vlm2vec_reads_split_rows_as_mmeb_evals(tmp_path, split_dir, joined_dir):
    """VLM2Vec-V2.0 gets the same prompts, so the same vectors and scores, from either layout."""
    v2 = load_as("VLM2Vec-V2.0", build_tiny_qwen2_vl(tmp_path / "tiny"))
    names = list(SPLIT_ROWS)
    split, split_spy = run_with_spy(v2, split_dir, names, tmp_path / "split")
    joined, joined_spy = run_with_spy(v2, joined_dir, names, tmp_path / "joined")
    # (a query that is its own positive is one item when joined, two when kept apart)
    assert set(split_spy.texts) == set(joined_spy.texts)
    for name in names:
        assert split.datasets[name].placeholders == "in_place"
        assert split.datasets[name].score == joined.datasets[name].score, name
        assert np.isclose(split.datasets[name].metrics["hit@1"], joined.datasets[name].score)
    assert not any("MMEB_Test_Instruct" in w for w in split.warnings + joined.warnings)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"qry_inst": None}, "field 'qry_inst': null"),
        ({"tgt_inst": None}, "field 'tgt_inst': null"),
        ({"tgt_text": "a caption"}, "field 'tgt_text': a string where a list"),
        ({"tgt_img_path": ["MSCOCO_t2i/cat.jpg"]}, "field 'tgt_text': 3 entries but there are 1"),
    ],
)
def test_a_malformed_split_row_is_an_error_naming_the_field(tmp_path, change, message):
    row = {**GOLDEN["MSCOCO_t2i"], **SPLIT_ROWS["MSCOCO_t2i"], **change}
    path = tmp_path / "MSCOCO_t2i.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=rf"MSCOCO_t2i: .*row 0: {message}"):
        load_examples([path], dataset="MSCOCO_t2i")
    del row["qry_text"]
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match="field 'qry_text': missing"):
        load_examples([path], dataset="MSCOCO_t2i")
