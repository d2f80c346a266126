"""Golden MMEB-V2 rows for the video-QA families (NExTQA, EgoSchema, MVBench, ActivityNetQA) and
MomentSeeker: two rows each, in V2's own columns, read into the exact query and candidate strings,
names, labels and frame indices VLM2Vec-V2 builds for Qwen2-VL.

The expected side is written from V2's code (TIGER-AI-Lab/VLM2Vec ``main`` = 6e1e1d4), not from
mmembed's: ``nextqa_dataset.py`` 10-78, ``egoschema_dataset.py`` 10-76, ``mvbench_dataset.py``
17-163, ``activitynetqa_dataset.py`` 15-79, ``momentseeker_dataset.py`` 12-94, with
``qa_template``, ``load_frames``, ``sample_frames`` and ``save_frames`` of
``src/utils/vision_utils/vision_utils.py`` (34-46, 232-314) and ``experiments/public/eval/
video.yaml`` (8 frames, 64 saved, ``eval_type: local`` for all five).

Videos are written with PyAV; their frames are extracted here by V2's own two rules (the QA
parsers' cv2 loop: every ``total // 64``-th frame, at most 64, ``0000.jpeg`` on; MomentSeeker's
``save_frames``: ``floor(i * total / 8)``, ``frame_0001.jpg`` on). Frame ``i`` shows ``i`` in
8 black/white blocks, so a frame the reader picks tells its index in the video.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from mmembed.eval import MMEBOptions, evaluate_mmeb, get_dataset
from mmembed.eval.data import DataError, MediaRoots, to_input
from mmembed.eval.v2_data import read_v2
from mmembed.inputs import Document, Text, Video

V = "<|video_pad|>"
PROMPT = (
    "Given a video and a question, select the most accurate answer from the provided "
    "candidates. Return only the exact text of your chosen answer. Question: "
)
BLOCK = 16  # pixels per bit


def _bits(index: int) -> np.ndarray:
    row = np.repeat([255 if index >> bit & 1 else 0 for bit in range(8)], BLOCK).astype(np.uint8)
    return np.stack([np.tile(row, (BLOCK, 1))] * 3, axis=-1)  # (16, 128, 3)


def _index_of(image: PILImage.Image) -> int:
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    return sum(
        1 << bit for bit in range(8) if grey[:, bit * BLOCK : (bit + 1) * BLOCK].mean() > 128
    )


def _write_video(path, count):
    """``count`` frames, frame i showing i, encoded by PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 128, 16, "yuv420p"
        stream.bit_rate = 4_000_000
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(_bits(index), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _decode(path):
    import av

    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def _extract_qa(video, folder, max_saved=64):
    """The QA parsers' cv2 loop (``nextqa_dataset.py`` lines 38-58): ``step = max(1, total //
    max_frames_saved)``, frames 0, step, 2 * step, ... until 64 are saved, ``%04d.jpeg``."""
    frames = _decode(video)
    step = max(1, len(frames) // max_saved)
    folder.mkdir(parents=True)
    for saved, index in enumerate(range(0, len(frames), step)):
        if saved == max_saved:
            break
        frames[index].save(folder / f"{saved:04d}.jpeg", quality=95)


def _extract_save_frames(video, folder, max_saved=8):
    """``save_frames`` (``vision_utils.py`` lines 287-314): every frame when there are at most
    ``max_frames_saved``, else ``floor(i * total / max)``; ``frame_%04d.jpg`` from 1."""
    frames = _decode(video)
    total = len(frames)
    picks = (
        list(range(total))
        if total <= max_saved
        else [math.floor(i * total / max_saved) for i in range(max_saved)]
    )
    folder.mkdir(parents=True)
    for number, index in enumerate(picks, start=1):
        frames[index].save(folder / f"frame_{number:04d}.jpg", quality=95)


def _frame_folder(folder, indices):
    folder.mkdir(parents=True)
    for number, index in enumerate(indices):
        PILImage.fromarray(_bits(index)).save(folder / f"{number:05d}.jpg", quality=95)


def _picked(item, roots):
    """The video indices of the frames ``to_input`` gives for an item."""
    value = to_input(item, roots)
    if isinstance(value, Document):
        value = next(s for s in value.segments if isinstance(s, Video))
    return [_index_of(frame) for frame in value.source]


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def layout(tmp_path):
    return tmp_path / "data", tmp_path / "videos"


def _roots(videos, dataset, every_frame=False):
    return MediaRoots(videos, videos / dataset, 8, "v2", every_frame=every_frame)


# 130 frames, 64 saved at step 2, 8 sampled by linspace(0, 63, 8): frames 0, 18, ..., 126
LONG = [0, 18, 36, 54, 72, 90, 108, 126]


def test_nextqa_rows(layout, tmp_path):
    data, videos = layout
    options = ["to throw it", "to play", "to eat it", "to clean up", "to show mum"]
    _jsonl(
        data / "NExTQA" / "test.jsonl",
        [
            {
                "video": 4740931975,
                "question": "why did the boy pick up the ball",
                "answer": 1,
                "qid": 7,
                "type": "CW",
                **{f"a{i}": o for i, o in enumerate(options)},
            },
            {
                "video": "2435100235",
                "question": "what is the dog doing",
                "answer": "4",
                "qid": 2,
                "type": "TC",
                "a0": "sleeping",
                "a1": "running",
                "a2": "eating",
                "a3": "barking",
                "a4": "swimming  ",
            },
        ],
    )
    _write_video(tmp_path / "raw" / "4740931975.mp4", 130)
    _extract_qa(tmp_path / "raw" / "4740931975.mp4", videos / "NExTQA" / "4740931975")
    _frame_folder(videos / "NExTQA" / "2435100235", range(5))
    first, second = read_v2(data / "NExTQA", "NExTQA").examples
    assert first.query.text == (
        f"{V} {PROMPT} why did the boy pick up the ball\nOptions:\n(A) to throw it\n(B) to play"
        "\n(C) to eat it\n(D) to clean up\n(E) to show mum"
    )
    assert [(c.text, c.name) for c in first.candidates] == [(o, o) for o in options]
    assert first.relevance == (0.0, 1.0, 0.0, 0.0, 0.0)
    # qa_template right-strips the whole text, so the last option's spaces go from the query
    # but stay in its candidate
    assert second.query.text.endswith("(D) barking\n(E) swimming")
    assert second.candidates[4].text == "swimming  " and second.relevance[4] == 1.0
    roots = _roots(videos, "NExTQA")
    assert _picked(first.query, roots) == LONG
    assert _picked(second.query, roots) == [0, 1, 2, 3, 4]  # fewer than 8: all, unpadded


def test_egoschema_rows(layout, tmp_path):
    data, videos = layout
    options = ["A. C cuts wood.", "B. C paints.", "C. C cooks."]
    _jsonl(
        data / "EgoSchema" / "test.jsonl",
        [
            {
                "video_idx": "001934bb-81bd",
                "question": "What is C doing?",
                "answer": "2",
                "question_idx": "q1",
                "option": options,
            },
            {
                "video_idx": "00b9a0de",
                "question": "Why?",
                "answer": 0,
                "question_idx": "q2",
                "option": ["A. Because.", "B no letter dot"],
            },
        ],
    )
    _write_video(tmp_path / "raw" / "ego.mp4", 130)
    _extract_qa(tmp_path / "raw" / "ego.mp4", videos / "EgoSchema" / "001934bb-81bd")
    _frame_folder(videos / "EgoSchema" / "00b9a0de", [3, 4, 5])
    first, second = read_v2(data / "EgoSchema", "EgoSchema").examples
    # the options follow the question with no separator, joined by single spaces
    assert first.query.text == (
        f"{V} {PROMPT} What is C doing?A. C cuts wood. B. C paints. C. C cooks."
    )
    assert [c.text for c in first.candidates] == ["C cuts wood", "C paints", "C cooks"]
    assert [c.name for c in first.candidates] == options and first.relevance == (0, 0, 1)
    # o[o.find('. '):] without '. ' keeps only the last character, as V2 does
    assert [c.text for c in second.candidates] == ["Because", "t"]
    assert second.relevance == (1.0, 0.0)
    roots = _roots(videos, "EgoSchema")
    assert _picked(first.query, roots) == LONG
    assert _picked(second.query, roots) == [3, 4, 5]


def test_mvbench_rows(layout, tmp_path):
    data, videos = layout
    _jsonl(
        data / "MVBench" / "train.jsonl",
        [
            {
                "subset": "action_antonym",
                "question": "What is the action performed?",
                "video": "166583.webm",
                "candidates": ["Pushing", "Pulling", "Lifting"],
                "answer": "Pulling",
            },
            {
                "subset": "episodic_reasoning",
                "question": "Who talks first?",
                "video": "s01e02_seg01",
                "candidates": ["Amy", "Sheldon", "Amy"],
                "answer": "Amy",
            },
        ],
    )
    _write_video(tmp_path / "raw" / "166583.mp4", 130)  # V2 names the folder by the file
    _extract_qa(
        tmp_path / "raw" / "166583.mp4", videos / "MVBench" / "action_antonym" / "166583.webm"
    )
    _frame_folder(videos / "MVBench" / "episodic_reasoning" / "s01e02_seg01", range(10, 22))
    first, second = read_v2(data / "MVBench", "MVBench").examples
    assert first.query.text == (
        f"{V} {PROMPT} What is the action performed?\nOptions:\n(A) Pushing\n(B) Pulling\n"
        "(C) Lifting"
    )
    assert [(c.text, c.name) for c in first.candidates] == [
        ("(A) Pushing", "(A) Pushing"),
        ("(B) Pulling", "(B) Pulling"),
        ("(C) Lifting", "(C) Lifting"),
    ]
    assert first.relevance == (0.0, 1.0, 0.0)
    assert first.query.video == "action_antonym/166583.webm"
    # a repeated answer is lettered by its last occurrence, so only "(C) Amy" is the label
    assert second.relevance == (0.0, 0.0, 1.0)
    roots = _roots(videos, "MVBench")
    assert _picked(first.query, roots) == LONG
    # 12 frames, linspace(0, 11, 8, dtype=int) = 0, 1, 3, 4, 6, 7, 9, 11
    assert _picked(second.query, roots) == [10, 11, 13, 14, 16, 17, 19, 21]


def test_activitynetqa_rows(layout, tmp_path):
    data, videos = layout
    _jsonl(
        data / "ActivityNetQA" / "test.jsonl",
        [
            {
                "video_name": "fPt4A5Nu2Xs",
                "question": "is the person outdoors",
                "answer": "yes",
                "question_id": "v_1",
            },
            {
                "video_name": "lp6jVZ2qyfE",
                "question": "is it night",
                "answer": "no",
                "question_id": "v_2",
            },
        ],
    )
    _write_video(tmp_path / "raw" / "v_fPt4A5Nu2Xs.mp4", 40)
    _extract_qa(tmp_path / "raw" / "v_fPt4A5Nu2Xs.mp4", videos / "ActivityNetQA" / "v_fPt4A5Nu2Xs")
    _frame_folder(videos / "ActivityNetQA" / "v_lp6jVZ2qyfE", range(8))
    first, second = read_v2(data / "ActivityNetQA", "ActivityNetQA").examples
    assert first.query.text == f"{V} {PROMPT} is the person outdoors? (A) yes; (B) no."
    assert [(c.text, c.name) for c in first.candidates] == [("yes", "yes"), ("no", "no")]
    assert (first.relevance, second.relevance) == ((1.0, 0.0), (0.0, 1.0))
    assert second.query.video == "v_lp6jVZ2qyfE"
    roots = _roots(videos, "ActivityNetQA")
    # 40 frames: step max(1, 40 // 64) = 1, all 40 saved; linspace(0, 39, 8, dtype=int)
    assert _picked(first.query, roots) == [0, 5, 11, 16, 22, 27, 33, 39]
    assert _picked(second.query, roots) == list(range(8))


def test_momentseeker_rows(layout, tmp_path):
    data, videos = layout
    root = videos / "MomentSeeker"
    _jsonl(
        data / "MomentSeeker" / "test.jsonl",
        [
            {
                "query": "the man opens the door",
                "input_frames": "movie101/77.mp4",
                "positive_frames": [{"output_path": "movie101/77_3.mp4"}],
                "negative_frames": [
                    {"output_path": "movie101/77_1.mp4"},
                    {"output_path": "movie101/77_5.mp4"},
                ],
            },
            {
                "query": "where does this dog run",
                "input_frames": "ego/dog.jpg",
                "positive_frames": [{"output_path": "ego/a.mp4"}, {"output_path": "ego/b.mp4"}],
                "negative_frames": [{"output_path": "ego/c.mp4"}],
            },
            {
                "query": "a red car parks",
                "input_frames": "",
                "positive_frames": [{"output_path": "x/1.mp4"}],
                "negative_frames": [{"output_path": "x/2.mp4"}],
            },
        ],
    )
    _write_video(tmp_path / "raw" / "77.mp4", 20)
    _extract_save_frames(tmp_path / "raw" / "77.mp4", root / "video_frames" / "movie101_77")
    _frame_folder(root / "video_frames" / "movie101_77_3", range(12))  # more than 8 frames
    first, second, third = read_v2(data / "MomentSeeker", "MomentSeeker", root).examples
    target = f"{V} Understand the content of the provided video clip."
    assert first.query.text == (
        f"{V} Find the clip that corresponds to the given sentence and video segment: "
        "the man opens the door"
    )
    assert first.query.video == "video_frames/movie101_77"
    assert [(c.text, c.video, c.name) for c in first.candidates] == [
        (target, f"video_frames/movie101_{n}", f"video_frames/movie101_{n}")
        for n in ("77_3", "77_1", "77_5")
    ]
    assert first.relevance == (1.0, 0.0, 0.0)
    assert second.query.text == (
        "<|image_1|> Select the video clip that aligns with the given text and image: "
        "where does this dog run"
    )
    assert second.query.image == str(root / "query_ego/dog.jpg") and not second.query.video
    assert second.relevance == (1.0, 1.0, 0.0)
    assert third.query.text == "Find the clip that corresponds to the given text: a red car parks"
    assert not third.query.image and not third.query.video
    roots = _roots(videos, "MomentSeeker", every_frame=True)
    assert _picked(first.query, roots) == [0, 2, 5, 7, 10, 12, 15, 17]  # save_frames' picks
    assert _picked(first.candidates[0], roots) == list(range(12))  # load_frames: every frame


NEXTQA = {"video": 1, "question": "q", "answer": 0, "qid": 1, "type": "t"} | {
    f"a{i}": "x" for i in range(5)
}
EGO = {
    "video_idx": "v",
    "question": "q",
    "answer": "0",
    "question_idx": 1,
    "option": ["A. a", "B. b"],
}
MVBENCH = {"subset": "action_count", "question": "q", "video": "v.mp4", "candidates": ["1", "2"]}
ANET = {"video_name": "v", "question": "q", "question_id": 1}
SEEKER = {"query": "q", "input_frames": "", "positive_frames": [{"output_path": "a.mp4"}]}


@pytest.mark.parametrize(
    ("dataset", "row", "field", "reason"),
    [
        ("NExTQA", NEXTQA | {"answer": 5}, "answer", "outside the 5 options"),
        ("NExTQA", NEXTQA | {"question": None}, "question", "got null"),
        ("NExTQA", NEXTQA | {"video": 1.5}, "video", "expected an id"),
        ("EgoSchema", EGO | {"option": "A. one"}, "option", "a string where a list"),
        ("MVBench", MVBENCH | {"answer": "3"}, "answer", "none of the candidates"),
        ("MVBench", MVBENCH | {"answer": "1", "subset": "x"}, "subset", "20 subsets"),
        ("ActivityNetQA", ANET | {"answer": "maybe"}, "answer", "none of the candidates"),
        (
            "MomentSeeker",
            SEEKER | {"positive_frames": [], "negative_frames": [{"output_path": "b.mp4"}]},
            "positive_frames",
            "no positive clip",
        ),
        ("MomentSeeker", SEEKER | {"negative_frames": []}, "candidates", "fewer than 2"),
    ],
)
def test_a_malformed_row_names_dataset_file_row_and_field(layout, dataset, row, field, reason):
    """After a good row, so the row number counts."""
    data, videos = layout
    good = {"NExTQA": NEXTQA, "EgoSchema": EGO, "MVBench": MVBENCH | {"answer": "1"}}
    good |= {"ActivityNetQA": ANET | {"answer": "no"}}
    good |= {"MomentSeeker": SEEKER | {"negative_frames": [{"output_path": "b.mp4"}]}}
    rows = [good[dataset], row]
    _jsonl(data / dataset / "test.jsonl", rows)
    number = len(rows) - 1
    with pytest.raises(DataError) as caught:
        read_v2(data / dataset, dataset, videos / dataset)
    message = str(caught.value)
    assert message.startswith(f"{dataset}: {data / dataset / 'test.jsonl'}: row {number}: ")
    assert f"field {field!r}" in message and reason in message
    loaded = read_v2(data / dataset, dataset, videos / dataset, skip_bad_rows=True)
    assert len(loaded.examples) == number and len(loaded.skipped) == 1


def test_a_missing_column_stops_even_when_skipping(layout):
    data, videos = layout
    _jsonl(data / "ActivityNetQA" / "test.jsonl", [{"video_name": "v", "question": "q"}])
    with pytest.raises(DataError, match=r"row 0: missing required column 'answer'"):
        read_v2(data / "ActivityNetQA", "ActivityNetQA", skip_bad_rows=True)


class _Hashed:
    """Each text and each frame gets a fixed random vector (from its md5); an item's vector is
    their sum, so rankings are arbitrary but reproducible outside the harness."""

    name, dim = "hashed", 16

    def encode(self, items, **_):
        return np.asarray([self.vector(item) for item in items], np.float32)

    def vector(self, item):
        parts = item.segments if isinstance(item, Document) else [item]
        total = np.zeros(self.dim)
        for part in parts:
            if isinstance(part, Video):
                keys = [f"frame{_index_of(frame)}" for frame in part.source]
            else:
                keys = [part.text if isinstance(part, Text) else str(part)]
            for key in keys:
                seed = int(hashlib.md5(key.encode()).hexdigest()[:8], 16)
                total += np.random.default_rng(seed).standard_normal(self.dim)
        return total / np.linalg.norm(total)


def test_video_qa_is_ranked_per_row_through_the_harness(layout, tmp_path):
    """``eval_type: local`` for the five sets (``video.yaml``): each query ranks its own
    options; hit@1 equals V2's rule (``argsort(-scores)``, top name among the labels) computed
    here from the same vectors; a malformed row is skipped as a miss with ``on_error="skip"``."""
    data, videos = layout
    rows = [
        {
            "video_name": f"clip{i}",
            "question": f"question {i}",
            "answer": ["yes", "no"][i % 2],
            "question_id": i,
        }
        for i in range(6)
    ]
    # named as the hub names V2's files, like MMEB's: the columns tell the layout
    hub_file = data / "ActivityNetQA" / "test-00000-of-00001.parquet"
    hub_file.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), hub_file)
    for i in range(6):
        _frame_folder(videos / "ActivityNetQA" / f"v_clip{i}", range(i, i + 3))
    for name in ("NExTQA", "EgoSchema", "MVBench", "ActivityNetQA", "MomentSeeker"):
        assert not get_dataset(name).corpus_ranked, name
    model = _Hashed()
    options = MMEBOptions(video_dir=videos, placeholders="in_place")
    report = evaluate_mmeb(model, data, ["ActivityNetQA"], tmp_path / "out", options)
    result = report.datasets["ActivityNetQA"]
    assert result.ranking == "per row" and result.num_queries == 6
    roots = _roots(videos, "ActivityNetQA")
    hits = []
    for example in read_v2(data / "ActivityNetQA", "ActivityNetQA").examples:
        query = model.vector(to_input(example.query, roots))
        scores = [query @ model.vector(to_input(c, roots)) for c in example.candidates]
        top = example.candidates[int(np.argsort(-np.asarray(scores), kind="stable")[0])].name
        labels = {
            c.name for c, r in zip(example.candidates, example.relevance, strict=True) if r > 0
        }
        hits.append(top in labels)
    assert result.score == pytest.approx(np.mean(hits))
    predictions = (tmp_path / "out" / "ActivityNetQA_pred.jsonl").read_text().splitlines()
    assert [sorted(json.loads(p)["prediction"]) for p in predictions] == [["no", "yes"]] * 6

    pq.write_table(pa.Table.from_pylist(rows + [{**rows[0], "answer": "unsure"}]), hub_file)
    with pytest.raises(DataError, match=r"ActivityNetQA: .*00001.parquet: row 6: field 'answer'"):
        evaluate_mmeb(model, data, ["ActivityNetQA"], None, options)
    skipping = MMEBOptions(video_dir=videos, placeholders="in_place", on_error="skip")
    skipped = evaluate_mmeb(model, data, ["ActivityNetQA"], None, skipping).datasets
    assert skipped["ActivityNetQA"].skipped_rows == 1
    assert skipped["ActivityNetQA"].score == pytest.approx(sum(hits) / 7)


def test_momentseeker_reaches_the_model_with_whole_folders_and_its_query_image(layout):
    """Through ``evaluate_mmeb``: MomentSeeker's frame folders arrive whole (12 frames where the
    other V2 sets would take 8), and an image query's ``query_<input_frames>`` from the frame
    root."""
    data, videos = layout
    root = videos / "MomentSeeker"
    row = {"query": "a dog", "input_frames": "ego/dog.jpg"}
    _jsonl(
        data / "MomentSeeker" / "test.jsonl",
        [
            row
            | {
                "positive_frames": [{"output_path": "ego/a.mp4"}],
                "negative_frames": [{"output_path": "ego/b.mp4"}],
            }
        ],
    )
    _frame_folder(root / "video_frames" / "ego_a", range(12))
    _frame_folder(root / "video_frames" / "ego_b", range(20, 23))
    (root / "query_ego").mkdir()
    PILImage.fromarray(_bits(7)).save(root / "query_ego" / "dog.jpg")
    seen = []

    class Recording(_Hashed):
        def vector(self, item):
            parts = item.segments if isinstance(item, Document) else [item]
            seen.extend(
                len(p.source) if isinstance(p, Video) else str(getattr(p, "source", ""))
                for p in parts
            )
            return super().vector(item)

    options = MMEBOptions(video_dir=videos, placeholders="in_place")
    report = evaluate_mmeb(Recording(), data, ["MomentSeeker"], None, options)
    assert report.datasets["MomentSeeker"].ranking == "per row"
    assert 12 in seen and 3 in seen
    assert str(root / "query_ego" / "dog.jpg") in seen


def test_hub_trees_are_read_as_v2_loads_them(layout):
    """MVBench's hub files are one folder per subset; V2 loads the 20 in ``subset_meta`` order
    and adds each row's ``subset`` (``dataset_utils.py`` lines 78-91). NExTQA's are in its
    ``MC`` config, of which V2 loads the test split (``dataset_hf_path.py`` line 25)."""
    data, _ = layout
    subsets = [
        "episodic_reasoning", "action_sequence", "action_prediction", "action_antonym",
        "fine_grained_action", "unexpected_action", "object_existence", "object_interaction",
        "object_shuffle", "moving_direction", "action_localization", "scene_transition",
        "action_count", "moving_count", "moving_attribute", "state_change", "fine_grained_pose",
        "character_order", "egocentric_navigation", "counterfactual_inference",
    ]  # fmt: skip
    for number, subset in enumerate(sorted(subsets)):  # written in another order
        row = MVBENCH | {"video": f"{number}.mp4", "answer": "2"}
        _jsonl(data / "MVBench" / subset / "train" / "0000.jsonl", [row])
    examples = read_v2(data / "MVBench", "MVBench").examples
    assert [e.query.video.split("/")[0] for e in examples] == subsets
    assert examples[0].query.video == f"episodic_reasoning/{sorted(subsets).index(subsets[0])}.mp4"
    (data / "MVBench" / "state_change" / "train" / "0000.jsonl").unlink()
    (data / "MVBench" / "state_change" / "train").rmdir()
    (data / "MVBench" / "state_change").rmdir()
    with pytest.raises(DataError, match=r"MVBench: .*all 20 subsets; missing \['state_change'\]"):
        read_v2(data / "MVBench", "MVBench")

    config = data / "NExTQA" / "MC"
    config.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([NEXTQA, NEXTQA]), config / "test-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist([NEXTQA] * 3), config / "train-00000-of-00001.parquet")
    assert len(read_v2(data / "NExTQA", "NExTQA").examples) == 2


def test_ssv2_keeps_the_first_1000_rows_as_v2_samples_it(layout):
    """``num_sample_per_subset: 1000`` for SmthSmthV2 in ``video.yaml``; ``sample_dataset``
    keeps ``range(1000)``. Row 1000 on is never read, so its fault does not matter."""
    data, _ = layout
    row = {"video_id": 1, "pos_text": "a", "neg_text": ["a", "b"]}
    _jsonl(data / "SmthSmthV2" / "test.jsonl", [row] * 1000 + [row | {"pos_text": None}])
    assert len(read_v2(data / "SmthSmthV2", "SmthSmthV2").examples) == 1000
