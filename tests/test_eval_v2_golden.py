"""Golden MMEB-V2 rows: for each V2 task family, two rows in V2's own data layout read into the
exact query and candidate strings VLM2Vec-V2 builds for Qwen2-VL (VLM2Vec-V2.0's backbone),
with V2's candidate names and frame indices.

The expected side is written from V2's code (TIGER-AI-Lab/VLM2Vec ``main`` = 6e1e1d4), not from
mmembed's: ``src/model/processor.py`` ``process_input_text`` (lines 650-673), the parsers in
``src/data/eval_dataset/`` (cited per test) and ``sample_frames`` in
``src/utils/vision_utils/vision_utils.py`` (lines 254-284: ``np.linspace(0, n - 1, N,
dtype=int)`` over the natural-sorted frames, and every frame, unpadded, when there are fewer).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from mmeb_official import vlm2vec_text
from PIL import Image as PILImage

from mmembed.eval import MMEBOptions, evaluate_mmeb
from mmembed.eval.data import MediaRoots, to_input
from mmembed.eval.v2_data import read_v2
from mmembed.inputs import Document, Video

QWEN_VIDEO = "<|video_pad|>"


def _frames(folder, count):
    """V2's frame folder (``frame_%04d.jpg`` from 1, as ``save_frames`` writes); frame i is
    grey level 3 * i, so a picked frame tells its index."""
    folder.mkdir(parents=True)
    for i in range(count):
        PILImage.new("L", (32, 24), 3 * i).save(folder / f"frame_{i + 1:04d}.jpg", quality=100)


def _picked(item, roots):
    video = to_input(item, roots)
    video = (
        next(s for s in video.segments if isinstance(s, Video))
        if isinstance(video, Document)
        else video
    )
    return [round(int(np.asarray(f.convert("L")).mean()) / 3) for f in video.source]


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _expected_picks(n, k=8):
    return np.linspace(0, n - 1, k, dtype=int).tolist() if k <= n else list(range(n))


@pytest.fixture
def layout(tmp_path):
    return tmp_path / "data", tmp_path / "videos", tmp_path / "images"


def test_video_classification_rows(layout):
    """``video_classification_datasets.py`` lines 21-40 and 61-64; ``ssv2_dataset.py`` 20-41."""
    data, videos, _ = layout
    _jsonl(
        data / "HMDB51" / "test.jsonl",
        [
            {"video_id": "brush_hair_1", "pos_text": "brush hair"},
            {"video_id": "cartwheel_7", "pos_text": "cartwheel"},
        ],
    )
    (data / "HMDB51" / "labels.txt").write_text("brush hair\ncartwheel\nclimb\n")
    _frames(videos / "HMDB51" / "brush_hair_1", 64)
    _frames(videos / "HMDB51" / "cartwheel_7", 5)
    loaded = read_v2(data / "HMDB51", "HMDB51")
    query = f"{QWEN_VIDEO} What actions or objects interactions are the person in the video doing?"
    roots = MediaRoots(data, videos / "HMDB51", 8, "v2")
    for example, label, frames in zip(
        loaded.examples, ["brush hair", "cartwheel"], [64, 5], strict=True
    ):
        assert example.query.text == query
        assert [(c.text, c.name) for c in example.candidates] == [(label, label)]
        assert _picked(example.query, roots) == _expected_picks(frames)
    assert [c.name for c in loaded.corpus] == ["brush hair", "cartwheel", "climb"]
    assert _expected_picks(64) == [0, 9, 18, 27, 36, 45, 54, 63]

    _jsonl(
        data / "SmthSmthV2" / "test.jsonl",
        [
            {
                "video_id": 74225,
                "pos_text": "Folding paper",
                "neg_text": ["Tearing paper", "Folding paper"],
            },
            {
                "video_id": 116154,
                "pos_text": "Pushing a cup",
                "neg_text": ["Pushing a cup", "Lifting a cup"],
            },
        ],
    )
    ssv2 = read_v2(data / "SmthSmthV2", "SmthSmthV2").examples
    instruction = (
        "What actions or object interactions are being performed by the person in the video?"
    )
    assert [e.query.text for e in ssv2] == [f"{QWEN_VIDEO} {instruction}"] * 2
    assert [e.query.video for e in ssv2] == ["74225", "116154"]
    assert [[c.name for c in e.candidates] for e in ssv2] == [
        ["Tearing paper", "Folding paper"],
        ["Pushing a cup", "Lifting a cup"],
    ]
    assert [e.relevance for e in ssv2] == [(0.0, 1.0), (1.0, 0.0)]


def test_video_retrieval_rows(layout):
    """``msrvtt_dataset.py`` lines 10-41: the caption is the query, the video (named by its id)
    the candidate."""
    data, _, _ = layout
    _jsonl(
        data / "MSR-VTT" / "test.jsonl",
        [
            {
                "video_id": "video7020",
                "video": "video7020.mp4",
                "caption": "a woman creating a fondant baby",
            },
            {"video_id": "video7021", "video": "video7021.mp4", "caption": "a man rides a horse"},
        ],
    )
    examples = read_v2(data / "MSR-VTT", "MSR-VTT").examples
    assert [e.query.text for e in examples] == [
        "Find a video that contains the following visual content: a woman creating a fondant baby",
        "Find a video that contains the following visual content: a man rides a horse",
    ]
    target = f"{QWEN_VIDEO} Understand the content of the provided video."
    assert [[(c.text, c.video, c.name) for c in e.candidates] for e in examples] == [
        [(target, "video7020", "video7020")],
        [(target, "video7021", "video7021")],
    ]


def test_video_qa_rows(layout):
    """``videomme_dataset.py`` lines 11-73: ``f"{video_token} {prompt} {query}"`` with the options
    on their own lines; candidates drop the option letter; names are the whole options."""
    data, _, _ = layout
    options = ["A. A cat.", "B. A dog.", "C. A bird.", "D. A fish."]
    _jsonl(
        data / "Video-MME" / "test.jsonl",
        [
            {
                "question": "What animal appears first?",
                "videoID": "fFjv93ACGo8",
                "options": options,
                "answer": "B",
                "question_id": "001-1",
                "domain": "x",
                "sub_category": "y",
            },
            {
                "question": "How many people?",
                "videoID": "fFjv93ACGo8",
                "options": ["A. 1.", "B. 2.", "C. 3.", "D. 4."],
                "answer": "D",
                "question_id": "001-2",
                "domain": "x",
                "sub_category": "y",
            },
        ],
    )
    first, second = read_v2(data / "Video-MME", "Video-MME").examples
    prompt = (
        "Given a video and a question, select the most accurate answer from the provided "
        "candidates. Return only the exact text of your chosen answer. Question: "
    )
    assert first.query.text == (
        f"{QWEN_VIDEO} {prompt} What animal appears first?\nA. A cat.\nB. A dog.\nC. A bird.\nD. A fish."
    )
    assert [c.text for c in first.candidates] == ["A cat", "A dog", "A bird", "A fish"]
    assert [c.name for c in first.candidates] == options and first.relevance == (0, 1, 0, 0)
    assert [c.text for c in second.candidates] == ["1", "2", "3", "4"]
    assert second.relevance == (0, 0, 0, 1)


def test_moment_retrieval_rows(layout):
    """``moment_retrieval_datasets.py`` lines 24-78: query frames in ``<video>/query``, every
    other folder a clip, ``positive*`` the label (V2 lists them in ``os.listdir`` order; the
    reader sorts)."""
    data, videos, _ = layout
    _jsonl(
        data / "QVHighlight" / "test.jsonl",
        [
            {"query": "a dog runs on the beach", "video_path": "clips/vid_a.mp4"},
            {"query": "people cheer", "video_path": "clips/vid_b.mp4"},
        ],
    )
    for video in ["vid_a", "vid_b"]:
        for clip in ["query", "negative_0", "positive", "negative_1"]:
            _frames(videos / "QVHighlight" / video / clip, 8)
    first, second = read_v2(data / "QVHighlight", "QVHighlight", videos / "QVHighlight").examples
    assert first.query.text == (
        f"{QWEN_VIDEO} Find the clip that corresponds to the described scene in the given video: "
        "a dog runs on the beach"
    )
    assert first.query.video == "vid_a/query" and second.query.video == "vid_b/query"
    assert [c.name for c in second.candidates] == [
        "vid_b/negative_0",
        "vid_b/negative_1",
        "vid_b/positive",
    ]
    assert second.relevance == (0.0, 0.0, 1.0)
    assert {c.text for c in first.candidates} == {
        f"{QWEN_VIDEO} Understand the content of the provided video."
    }


def test_visual_document_rows(layout):
    """``vidore_dataset.py`` lines 9-75 and ``visrag_dataset.py`` lines 10-83: BEIR queries,
    qrels with score > 0, the corpus; VisRAG's page files have hashed names."""
    data, _, images = layout
    _jsonl(
        data / "ViDoRe_arxivqa" / "queries" / "test.jsonl",
        [
            {"query-id": 1, "query": "Which figure shows the loss?"},
            {"query-id": 2, "query": "What is the dataset size?"},
        ],
    )
    _jsonl(
        data / "ViDoRe_arxivqa" / "qrels" / "test.jsonl",
        [
            {"query-id": 1, "corpus-id": 10, "score": 1},
            {"query-id": 2, "corpus-id": 11, "score": 2},
            {"query-id": 2, "corpus-id": 12, "score": 0},  # dropped, as load_qrels_mapping does
        ],
    )
    _jsonl(
        data / "ViDoRe_arxivqa" / "corpus" / "test.jsonl", [{"corpus-id": i} for i in (10, 11, 12)]
    )
    loaded = read_v2(data / "ViDoRe_arxivqa", "ViDoRe_arxivqa")
    target = "<|image_pad|> Understand the content of the provided document image."
    assert [vlm2vec_text(e.query.text) for e in loaded.examples] == [
        "Find a document image that matches the given query: Which figure shows the loss?",
        "Find a document image that matches the given query: What is the dataset size?",
    ]
    assert [
        [(vlm2vec_text(c.text), c.image, c.name) for c in e.candidates] for e in loaded.examples
    ] == [
        [(target, "10.png", "10")],
        [(target, "11.png", "11")],
    ]
    assert loaded.examples[1].relevance == (2.0,)
    assert [c.name for c in loaded.corpus] == ["10", "11", "12"]

    name = "arxiv_2310.01234_page_3_" + "x" * 40 + ".png"
    _jsonl(data / "VisRAG_ArxivQA" / "queries.jsonl", [{"query-id": "q", "query": "Which chart?"}])
    _jsonl(
        data / "VisRAG_ArxivQA" / "qrels.jsonl", [{"query-id": "q", "corpus-id": name, "score": 1}]
    )
    _jsonl(data / "VisRAG_ArxivQA" / "corpus.jsonl", [{"corpus-id": name}])
    (page,) = read_v2(data / "VisRAG_ArxivQA", "VisRAG_ArxivQA").examples[0].candidates
    base = name[:-4]
    assert page.image == base[:50] + "_" + hashlib.md5(name.encode()).hexdigest()[:8] + ".png"
    assert page.name == name


def test_a_v2_layout_is_evaluated_with_its_names(layout, tmp_path):
    """End to end: the harness reads V2's layout, ranks MSR-VTT against its corpus, and writes
    V2's names into the prediction file."""
    data, videos, images = layout
    _jsonl(
        data / "MSR-VTT" / "test.jsonl",
        [
            {"video_id": "v1", "video": "v1.mp4", "caption": "dark"},
            {"video_id": "v2", "video": "v2.mp4", "caption": "light"},
        ],
    )
    _frames(videos / "MSR-VTT" / "v1", 3)
    _frames(videos / "MSR-VTT" / "v2", 70)

    class Grey:
        name, dim = "grey", 2

        def encode(self, items, **_):
            rows = []
            for item in items:
                if isinstance(item, Video):  # brightness of the middle frame, as an angle
                    level = np.asarray(item.source[len(item.source) // 2].convert("L")).mean() / 255
                else:
                    level = 0.0 if "dark" in item.text else 1.0
                rows.append([np.cos(level), np.sin(level)])
            return np.asarray(rows, np.float32)

    out = tmp_path / "out"
    options = MMEBOptions(video_dir=videos, placeholders="removed")
    report = evaluate_mmeb(Grey(), data, ["MSR-VTT"], out, options)
    assert report.datasets["MSR-VTT"].ranking == "corpus"
    predictions = [
        json.loads(line) for line in (out / "MSR-VTT_pred.jsonl").read_text().splitlines()
    ]
    assert [p["label"] for p in predictions] == [["v1"], ["v2"]]
    assert [p["prediction"] for p in predictions] == [["v1", "v2"], ["v2", "v1"]]
    assert report.datasets["MSR-VTT"].score == 1.0


def test_the_other_caption_to_video_rows(layout):
    """``msvd_dataset.py``, ``didemo_dataset.py``, ``youcook2_dataset.py``, ``vatex_dataset.py``
    (lines 8-40 each): each parser's instruction, caption column and video name."""
    data, _, _ = layout
    cases = {
        "MSVD": (
            [
                {
                    "video_id": "-4wsuPCjDBc_5_15",
                    "video": "a.avi",
                    "caption": ["a squirrel eats", "x"],
                },
                {"video_id": "-7KMZQEsJW4_205_208", "video": "b.avi", "caption": ["a man sings"]},
            ],
            "Find the video snippet that corresponds to the given summary:",
            ["a squirrel eats", "a man sings"],
            ["-4wsuPCjDBc_5_15", "-7KMZQEsJW4_205_208"],
        ),
        "DiDeMo": (
            [
                {"video": "videos/123@N00_456.mp4", "caption": "the dog jumps"},
                {"video": "videos/789.avi", "caption": "a car turns"},
            ],
            "Find a video that includes the following described scenes:",
            ["the dog jumps", "a car turns"],
            ["123@N00_456", "789"],
        ),
        "YouCook2": (
            [
                {
                    "id": "GLd3aX16zBg_0",
                    "video_path": "v/GLd3aX16zBg.mp4",
                    "sentence": "spread butter",
                },
                {
                    "id": "GLd3aX16zBg_1",
                    "video_path": "v/GLd3aX16zBg.mp4",
                    "sentence": "add the bread",
                },
            ],
            "Find a video that demonstrates the following action while making a recipe:",
            ["spread butter", "add the bread"],
            ["GLd3aX16zBg_0", "GLd3aX16zBg_1"],
        ),
        "VATEX": (
            [
                {"videoID": "Ptf_2VRj-V0_000122_000132", "enCap": ["a boy plays drums", "y"]},
                {"videoID": "PYOe7Wxr-dY_000036_000046", "enCap": ["two people dance"]},
            ],
            "Select a video that fits the description provided:",
            ["a boy plays drums", "two people dance"],
            ["Ptf_2VRj-V0_000122_000132", "PYOe7Wxr-dY_000036_000046"],
        ),
    }
    target = f"{QWEN_VIDEO} Understand the content of the provided video."
    for dataset, (rows, instruction, captions, names) in cases.items():
        _jsonl(data / dataset / "test.jsonl", rows)
        examples = read_v2(data / dataset, dataset).examples
        assert [e.query.text for e in examples] == [f"{instruction} {c}" for c in captions]
        assert [[(c.text, c.video, c.name) for c in e.candidates] for e in examples] == [
            [(target, name, name)] for name in names
        ], dataset
