"""MMEB-V2's video readers: each V2 video parser's columns turned into the harness's rows, with
the exact query and candidate strings, candidate names and labels V2 builds for Qwen2-VL.

Read from TIGER-AI-Lab/VLM2Vec ``main`` = 6e1e1d42d4cba85ae4db4d3f7a25cba2465d1e16, the files
under ``src/data/eval_dataset/`` cited per reader, with ``qa_template`` and
``process_video_frames`` from ``src/utils/vision_utils/vision_utils.py`` (lines 34-46 and
232-284) and the settings of ``experiments/public/eval/video.yaml`` (8 frames, ``eval_type``).

Frame folders are relative to ``VIDEO_DIR/<dataset>/`` (V2's ``frame_root``). Every reader but
MomentSeeker's samples 8 frames of a folder by ``np.linspace`` (``data.v2_frame_indices``);
MomentSeeker reads every frame of a folder (``load_frames``, ``EVERY_FRAME``).

Labels are matched by candidate name, as V2's metrics do, so a repeated correct option counts.
A label that no candidate carries (V2 would score a silent miss) or an answer index outside the
options (V2 would stop with an IndexError) is a row error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .data import DataError, Example, RowItem
from .v2_rows import IMAGE, VIDEO, V2Row, v2_text

Builder = Callable[[V2Row, int, Path | None], Example]
"""(row, its number in the dataset, ``VIDEO_DIR/<dataset>``) -> the harness's row."""

EVERY_FRAME = frozenset({"MomentSeeker"})
"""Datasets whose frame folders are read whole (``momentseeker_dataset.py`` calls ``load_frames``
where the other parsers call ``process_video_frames``)."""

CLASS_INSTRUCTION = {
    "K700": "Recognize the category of the video content.",
    "SmthSmthV2": "What actions or object interactions are being performed by the person in "
    "the video?",
    "UCF101": "What activities or sports are being performed by the person in the video?",
    "HMDB51": "What actions or objects interactions are the person in the video doing?",
    "Breakfast": "Recognize the breakfast type that the person is cooking in the video. ",
}
"""``DATASET_INSTRUCTION`` (``video_classification_utils.py`` lines 16-22)."""

QA_PROMPT = (
    "Given a video and a question, select the most accurate answer from the provided "
    "candidates. Return only the exact text of your chosen answer. Question: "
)
"""``TASK_PROMPT`` of every video-QA parser (``videomme_dataset.py`` line 18,
``nextqa_dataset.py`` 18, ``egoschema_dataset.py`` 18, ``mvbench_dataset.py`` 101,
``activitynetqa_dataset.py`` 23)."""
VIDEOMME_PROMPT = QA_PROMPT
VIDEO_QUERY = "Find a video that contains the following visual content:"
CAPTION_QUERIES = {
    "msrvtt": VIDEO_QUERY,
    "msvd": "Find the video snippet that corresponds to the given summary:",
    "didemo": "Find a video that includes the following described scenes:",
    "youcook2": "Find a video that demonstrates the following action while making a recipe:",
    "vatex": "Select a video that fits the description provided:",
}
"""``TASK_INST_QRY`` of each caption-to-video parser (``msrvtt_dataset.py`` line 10,
``msvd_dataset.py``, ``didemo_dataset.py``, ``youcook2_dataset.py``, ``vatex_dataset.py``
lines 8-9)."""
VIDEO_TARGET = "Understand the content of the provided video."
MOMENT_QUERY = "Find the clip that corresponds to the described scene in the given video:"
SEEKER_QUERY_TEXT = "Find the clip that corresponds to the given text:"
SEEKER_QUERY_IMAGE = "Select the video clip that aligns with the given text and image:"
SEEKER_QUERY_VIDEO = "Find the clip that corresponds to the given sentence and video segment:"
SEEKER_TARGET = "Understand the content of the provided video clip."
"""``momentseeker_dataset.py`` lines 12-15."""

MVBENCH_SUBSETS = tuple(
    "episodic_reasoning action_sequence action_prediction action_antonym fine_grained_action "
    "unexpected_action object_existence object_interaction object_shuffle moving_direction "
    "action_localization scene_transition action_count moving_count moving_attribute "
    "state_change fine_grained_pose character_order egocentric_navigation "
    "counterfactual_inference".split()
)
"""The 20 subsets of ``subset_meta`` in its order (``mvbench_dataset.py`` lines 24-45), which
is the order V2 concatenates them in; V2 stops on any other."""


def qa_query(question: str) -> str:
    """``process_query(query, prompt=TASK_PROMPT, video_token)`` of the video-QA parsers:
    ``f"{video_token} {prompt} {query}"`` (the prompt's own trailing space stays)."""
    return f"{VIDEO} {QA_PROMPT} {question}"


def qa_template(question: str, candidates: list[str], answer: str) -> tuple[str, list[str], str]:
    """``qa_template`` (``vision_utils.py`` lines 34-46): the options as ``(A) ...`` lines after
    ``Options:``, the whole text right-stripped; the answer lettered by the last candidate equal
    to it (``(@)``, matching nothing, when none is)."""
    text = f"{question}\nOptions:\n"
    options = []
    answer_index = -1
    for index, candidate in enumerate(candidates):
        text += f"({chr(ord('A') + index)}) {candidate}\n"
        options.append(f"({chr(ord('A') + index)}) {candidate}")
        if candidate == answer:
            answer_index = index
    return text.rstrip(), options, f"({chr(ord('A') + answer_index)}) {answer}"


def _choice(
    row: V2Row,
    number: int,
    query: RowItem,
    texts: list[str],
    names: list[str],
    label: str,
    field: str,
) -> Example:
    """A multiple-choice row: candidates ``texts`` named ``names``; relevant where the name is
    the label (V2's metrics match names)."""
    if label not in names:
        raise row.error(field, f"the answer {label!r} is none of the candidates {names}")
    candidates = tuple(RowItem(t, name=n) for t, n in zip(texts, names, strict=True))
    return Example(query, candidates, tuple(float(n == label) for n in names), number)


def _letter_stripped(option: str) -> str:
    """``o[o.find('. '):].strip('. ')`` (Video-MME and EgoSchema candidates), kept exactly:
    without ``'. '`` it keeps the last character, as V2 does."""
    return option[option.find(". ") :].strip(". ")


def _video_class(row: V2Row, number: int, root: Path | None) -> Example:
    """``video_classification_datasets.py`` lines 21-40: the label is the one candidate."""
    video_id, label = row.ident("video_id"), row.text("pos_text")
    query = RowItem(v2_text(CLASS_INSTRUCTION[row.dataset], video=True), video=video_id)
    return Example(query, (RowItem(label, name=label),), (1.0,), number)


def _ssv2(row: V2Row, number: int, root: Path | None) -> Example:
    """``ssv2_dataset.py`` lines 20-41: candidates are ``neg_text``, the label ``pos_text``."""
    video_id, positive, options = row.ident("video_id"), row.text("pos_text"), row.texts("neg_text")
    query = RowItem(v2_text(CLASS_INSTRUCTION[row.dataset], video=True), video=video_id)
    return _choice(row, number, query, options, options, positive, "pos_text")


def _caption_to_video(parser: str) -> Builder:
    """A caption finds its video, named by its id (``msrvtt_dataset.py`` lines 21-41; MSVD and
    VATEX take the first caption, DiDeMo names the video after its file, YouCook2 reads ``id``
    and ``sentence``)."""

    def build(row: V2Row, number: int, root: Path | None) -> Example:
        if parser == "didemo":
            path, caption = row.text("video"), row.text("caption")
            video_id = os.path.splitext(os.path.basename(path))[0]
        elif parser in ("msvd", "vatex"):
            id_field, caption_field = (
                ("video_id", "caption") if parser == "msvd" else ("videoID", "enCap")
            )
            video_id, caption = row.ident(id_field), row.texts(caption_field)[0]
            if parser == "msvd":
                row.get("video")
        else:
            id_field, path_field, caption_field = {
                "msrvtt": ("video_id", "video", "caption"),
                "youcook2": ("id", "video_path", "sentence"),
            }[parser]
            video_id, caption = row.ident(id_field), row.text(caption_field)
            row.get(path_field)  # V2 zips the column in, so it must exist
        query = RowItem(v2_text(CAPTION_QUERIES[parser], caption))
        target = RowItem(v2_text(VIDEO_TARGET, video=True), video=video_id, name=video_id)
        return Example(query, (target,), (1.0,), number)

    return build


def _videomme(row: V2Row, number: int, root: Path | None) -> Example:
    """``videomme_dataset.py`` lines 30-73: question and options after the prompt; candidates are
    the option texts without their letter, named by the whole option."""
    question, video_id, options = row.text("question"), row.ident("videoID"), row.texts("options")
    answer = row.text("answer")
    for column in ("question_id", "domain", "sub_category"):
        row.get(column)
    if answer not in "ABCD" or len(answer) != 1 or "ABCD".index(answer) >= len(options):
        raise row.error("answer", f"{answer!r} is not the letter of one of {len(options)} options")
    query = RowItem(qa_query(question + "\n" + "\n".join(options)), video=video_id)
    texts = [_letter_stripped(o) for o in options]
    return _choice(row, number, query, texts, options, options["ABCD".index(answer)], "answer")


def _nextqa(row: V2Row, number: int, root: Path | None) -> Example:
    """``nextqa_dataset.py`` lines 30-78: the query is ``qa_template`` of the question and
    ``a0``-``a4``; the candidates and their names are the raw options (the lettered ones
    ``qa_template`` returns are dropped), the label ``options[answer]``; frames in
    ``<video>/``."""
    video_id, question, answer = row.ident("video"), row.text("question"), row.index("answer")
    row.get("qid"), row.get("type")
    options = [row.text(f"a{i}") for i in range(5)]
    if not 0 <= answer < len(options):
        raise row.error("answer", f"index {answer} is outside the {len(options)} options")
    text, _, _ = qa_template(qa_query(question), options, "")
    query = RowItem(text, video=video_id)
    return _choice(row, number, query, options, options, options[answer], "answer")


def _egoschema(row: V2Row, number: int, root: Path | None) -> Example:
    """``egoschema_dataset.py`` lines 30-75: the options joined by spaces straight after the
    question (no separator, as V2 writes it); candidates without their letter, named by the
    whole option; the label ``option[int(answer)]``; frames in ``<video_idx>/``."""
    video_id, question = row.ident("video_idx"), row.text("question")
    answer, options = row.index("answer"), row.texts("option")
    row.get("question_idx")
    if not 0 <= answer < len(options):
        raise row.error("answer", f"index {answer} is outside the {len(options)} options")
    query = RowItem(qa_query(question + " ".join(options)), video=video_id)
    texts = [_letter_stripped(o) for o in options]
    return _choice(row, number, query, texts, options, options[answer], "answer")


def _mvbench(row: V2Row, number: int, root: Path | None) -> Example:
    """``mvbench_dataset.py`` lines 112-163: ``qa_template`` of the question and candidates;
    candidates and names are the lettered options, the label the lettered answer; frames in
    ``<subset>/<video>/`` (the file name, extension included, names the folder)."""
    subset, question, video = row.text("subset"), row.text("question"), row.ident("video")
    candidates, answer = row.texts("candidates"), row.text("answer")
    if subset not in MVBENCH_SUBSETS:
        raise row.error("subset", f"{subset!r} is not one of MVBench's 20 subsets")
    text, options, label = qa_template(qa_query(question), candidates, answer)
    query = RowItem(text, video=f"{subset}/{video}")
    return _choice(row, number, query, options, options, label, "answer")


def _activitynetqa(row: V2Row, number: int, root: Path | None) -> Example:
    """``activitynetqa_dataset.py`` lines 34-79: the question with ``? (A) yes; (B) no.``; the
    candidates ``yes`` and ``no``; frames in ``v_<video_name>/``."""
    video_name, question, answer = row.ident("video_name"), row.text("question"), row.text("answer")
    row.get("question_id")
    query = RowItem(qa_query(question + "? (A) yes; (B) no."), video=f"v_{video_name}")
    options = ["yes", "no"]
    return _choice(row, number, query, options, options, answer, "answer")


def _moment(row: V2Row, number: int, root: Path | None) -> Example:
    """``moment_retrieval_datasets.py`` lines 24-78: the query video's frames in
    ``<video>/query``, every other folder a candidate clip, ``positive*`` the label. V2 lists
    the folders in ``os.listdir`` order; here they are sorted (the same on every machine)."""
    text, video_path = row.text("query"), row.text("video_path")
    name = os.path.splitext(os.path.basename(video_path))[0]
    folder = _root(row, root) / name
    if not folder.is_dir():
        raise row.error("video_path", f"no clip folder {str(folder)!r}")
    query = RowItem(v2_text(MOMENT_QUERY, text, video=True), video=f"{name}/query")
    clips = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name != "query")
    target = v2_text(VIDEO_TARGET, video=True)
    candidates = tuple(RowItem(target, video=f"{name}/{c}", name=f"{name}/{c}") for c in clips)
    relevance = tuple(float(c.startswith("positive")) for c in clips)
    if not any(relevance):
        raise row.error("video_path", f"{str(folder)!r} holds no positive* clip folder")
    return Example(query, candidates, relevance, number)


def _momentseeker(row: V2Row, number: int, root: Path | None) -> Example:
    """``momentseeker_dataset.py`` lines 26-94: the query is text, text and image (``.jpg``:
    ``query_<input_frames>`` in the frame root) or text and video (``.mp4``: the frames in
    ``video_frames/<name>``, ``/`` read as ``_``); the candidates are the positive clips, then
    the negative ones, in ``video_frames/<clip>``, named by that folder (V2 prefixes its frame
    root). Frame folders are read whole (``EVERY_FRAME``)."""
    text, source = row.text("query"), row.text("input_frames")
    positives = row.records("positive_frames", "output_path")
    negatives = row.records("negative_frames", "output_path")
    if not positives:
        raise row.error("positive_frames", "no positive clip: every ranking would be a miss")
    if source.endswith(".mp4"):
        folder = "video_frames/" + source.split(".mp4")[0].replace("/", "_")
        query = RowItem(v2_text(SEEKER_QUERY_VIDEO, text, video=True), video=folder)
    elif source.endswith(".jpg"):
        image = str(_root(row, root) / f"query_{source}")  # V2: os.path.join(frame_root, ...)
        query = RowItem(v2_text(SEEKER_QUERY_IMAGE, text, image=True), image=image)
    else:
        query = RowItem(v2_text(SEEKER_QUERY_TEXT, text))
    clips = ["video_frames/" + p.replace("/", "_").split(".mp4")[0] for p in positives + negatives]
    target = v2_text(SEEKER_TARGET, video=True)
    candidates = tuple(RowItem(target, video=clip, name=clip) for clip in clips)
    labels = set(clips[: len(positives)])
    return Example(query, candidates, tuple(float(c in labels) for c in clips), number)


def _root(row: V2Row, root: Path | None) -> Path:
    if root is None:
        raise DataError(f"{row.dataset}: its reader needs the video folder (VIDEO_DIR/<dataset>)")
    return root


BUILDERS: dict[str, Builder] = {
    "video_classification": _video_class,
    "ssv2": _ssv2,
    **{parser: _caption_to_video(parser) for parser in CAPTION_QUERIES},
    "videomme": _videomme,
    "nextqa": _nextqa,
    "egoschema": _egoschema,
    "mvbench": _mvbench,
    "activitynetqa": _activitynetqa,
    "moment_retrieval": _moment,
    "momentseeker": _momentseeker,
}
"""V2 parser name -> reader."""

__all__ = ["BUILDERS", "EVERY_FRAME", "IMAGE", "VIDEO", "qa_template"]
