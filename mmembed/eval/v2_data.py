"""Readers for MMEB-V2's own data files: the columns VLM2Vec-V2's dataset parsers read
(``src/data/eval_dataset/*.py`` on ``main``), turned into the harness's rows with the exact
strings V2 builds.

Layout (the hub dataset's files, copied as they are)::

    DATA_DIR/<dataset>/*.parquet | *.jsonl       the rows (V2's columns, below)
    DATA_DIR/<dataset>/{queries,qrels,corpus}*   BEIR sets (ViDoRe, VisRAG): files or folders
    DATA_DIR/<dataset>/labels.txt                video classification: V2's class list, one per
                                                 line (``VIDEOCLS_LABEL_MAPPING``), the corpus
    VIDEO_DIR/<dataset>/<video id>/              V2's frame folders (its ``frame_root``)
    IMAGE_DIR/<dataset>/<corpus id>.png          V2's page images (its ``image_root``)

Texts use the Qwen2-VL backbone's strings (VLM2Vec-V2.0's), with ``<|image_1|>`` standing for
the image token and ``<|video_pad|>`` for the video token, so ``data.to_input`` puts each model's
own media where V2 puts the token. Candidate names are V2's (``RowItem.name``), so prediction files
compare with V2's. Parsers covered: vidore, visrag, video_classification, ssv2, msrvtt, msvd,
didemo, youcook2, vatex, videomme, moment_retrieval; the other V2 sets (NExTQA, EgoSchema,
MVBench, ActivityNetQA, MomentSeeker) are read in the MMEB row format (``data``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .data import DataError, Example, LoadedRows, RowItem

IMAGE = "<|image_1|>"
VIDEO = "<|video_pad|>"

V2_PARSERS: dict[str, str] = {
    "SmthSmthV2": "ssv2",
    "HMDB51": "video_classification",
    "UCF101": "video_classification",
    "K700": "video_classification",
    "Breakfast": "video_classification",
    "MSR-VTT": "msrvtt",
    "MSVD": "msvd",
    "DiDeMo": "didemo",
    "YouCook2": "youcook2",
    "VATEX": "vatex",
    "QVHighlight": "moment_retrieval",
    "Charades-STA": "moment_retrieval",
    "Video-MME": "videomme",
}
"""Dataset -> V2 parser (``experiments/public/eval/*.yaml`` on ``main``); every ViDoRe and
ViDoSeek/MMLongBench set uses ``vidore``, every VisRAG set ``visrag``."""

CLASS_INSTRUCTION = {
    "K700": "Recognize the category of the video content.",
    "SmthSmthV2": "What actions or object interactions are being performed by the person in "
    "the video?",
    "UCF101": "What activities or sports are being performed by the person in the video?",
    "HMDB51": "What actions or objects interactions are the person in the video doing?",
    "Breakfast": "Recognize the breakfast type that the person is cooking in the video. ",
}
"""``DATASET_INSTRUCTION`` (``video_classification_utils.py`` lines 16-22)."""

VIDEOMME_PROMPT = (
    "Given a video and a question, select the most accurate answer from the provided "
    "candidates. Return only the exact text of your chosen answer. Question: "
)
DOC_QUERY = "Find a document image that matches the given query:"
DOC_TARGET = "Understand the content of the provided document image."
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


def parser_of(dataset: str) -> str | None:
    """V2's parser for a dataset, or None when it has no reader here."""
    if dataset.startswith(("ViDoRe_", "ViDoSeek", "MMLongBench")):
        return "vidore"
    if dataset.startswith("VisRAG_"):
        return "visrag"
    return V2_PARSERS.get(dataset)


def v2_text(instruction: str, text: str = "", video: bool = False, image: bool = False) -> str:
    """``process_input_text`` (``src/model/processor.py`` lines 650-673) for Qwen2-VL."""
    prompt = instruction + (" " + text if text else "")
    if video:
        prompt = VIDEO + " " + prompt
    if image:
        prompt = IMAGE + " " + prompt
    return prompt


def read_v2(folder: Path, dataset: str, video_root: Path | None = None) -> LoadedRows | None:
    """The rows of a dataset stored in V2's layout, or None when ``folder`` holds none.

    Args:
        folder: ``DATA_DIR/<dataset>``.
        dataset: the registered name.
        video_root: ``VIDEO_DIR/<dataset>``, where moment-retrieval clips are listed.

    Raises:
        DataError: a file lacks a column the parser reads; the message names both.
    """
    parser = parser_of(dataset)
    if parser is None or not folder.is_dir():
        return None
    if parser in ("vidore", "visrag"):
        return _beir(folder, dataset, parser == "visrag")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".parquet", ".jsonl"))
    files = [p for p in files if p.name != "corpus.jsonl"]
    if not files:
        return None
    rows = list(_rows(files, dataset))
    if parser == "moment_retrieval":
        return LoadedRows([_moment(r, n, dataset, video_root) for n, r in enumerate(rows)], [])
    build: Callable[[dict[str, Any], int, str], Example] = _BUILDERS[parser]
    loaded = LoadedRows([build(row, n, dataset) for n, row in enumerate(rows)], [])
    if parser == "video_classification":
        labels = folder / "labels.txt"
        names = labels.read_text(encoding="utf-8").splitlines() if labels.is_file() else []
        loaded.corpus = [RowItem(name, name=name) for name in names if name]
    return loaded


def _rows(files: list[Path], dataset: str) -> Iterator[dict[str, Any]]:
    for path in files:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            yield from pq.read_table(path).to_pylist()
            continue
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        raise DataError(f"{dataset}: {path}: line {number}: {error}") from None


def _need(row: dict[str, Any], dataset: str, *columns: str) -> list[Any]:
    missing = [c for c in columns if c not in row]
    if missing:
        raise DataError(f"{dataset}: a V2 row lacks column(s) {missing}; it has {sorted(row)}")
    return [row[c] for c in columns]


def _video_class(row: dict[str, Any], number: int, dataset: str) -> Example:
    """``video_classification_datasets.py`` lines 21-40: the label is the one candidate."""
    video_id, label = _need(row, dataset, "video_id", "pos_text")
    query = RowItem(v2_text(CLASS_INSTRUCTION[dataset], video=True), video=str(video_id))
    return Example(query, (RowItem(label, name=label),), (1.0,), number)


def _ssv2(row: dict[str, Any], number: int, dataset: str) -> Example:
    """``ssv2_dataset.py`` lines 20-41: candidates are ``neg_text``, the label ``pos_text``."""
    video_id, positive, options = _need(row, dataset, "video_id", "pos_text", "neg_text")
    query = RowItem(v2_text(CLASS_INSTRUCTION[dataset], video=True), video=str(video_id))
    candidates = tuple(RowItem(text, name=text) for text in options)
    relevance = tuple(float(text == positive) for text in options)
    return Example(query, candidates, relevance, number)


def _caption_to_video(parser: str) -> Callable[[dict[str, Any], int, str], Example]:
    """A caption finds its video, named by its id (``msrvtt_dataset.py`` lines 21-41; MSVD and
    VATEX take the first caption, DiDeMo names the video after its file, YouCook2 reads ``id``
    and ``sentence``)."""

    def build(row: dict[str, Any], number: int, dataset: str) -> Example:
        if parser == "didemo":
            path, caption = _need(row, dataset, "video", "caption")
            video_id = os.path.splitext(os.path.basename(path))[0]
        else:
            columns = {
                "msrvtt": ("video_id", "caption"),
                "msvd": ("video_id", "caption"),
                "youcook2": ("id", "sentence"),
                "vatex": ("videoID", "enCap"),
            }[parser]
            video_id, caption = _need(row, dataset, *columns)
        if parser in ("msvd", "vatex"):
            caption = caption[0]
        query = RowItem(v2_text(CAPTION_QUERIES[parser], caption))
        target = RowItem(v2_text(VIDEO_TARGET, video=True), video=str(video_id), name=str(video_id))
        return Example(query, (target,), (1.0,), number)

    return build


def _videomme(row: dict[str, Any], number: int, dataset: str) -> Example:
    """``videomme_dataset.py`` lines 30-73: question and options after the prompt; candidates are
    the option texts without their letter, named by the whole option."""
    question, video_id, options, answer = _need(
        row, dataset, "question", "videoID", "options", "answer"
    )
    body = question + "\n" + "\n".join(options)
    query = RowItem(f"{VIDEO} {VIDEOMME_PROMPT} {body}", video=str(video_id))
    texts = [o[o.find(". ") :].strip(". ") for o in options]
    label = options["ABCD".index(answer)]
    candidates = tuple(RowItem(t, name=o) for t, o in zip(texts, options, strict=True))
    return Example(query, candidates, tuple(float(o == label) for o in options), number)


def _moment(row: dict[str, Any], number: int, dataset: str, root: Path | None) -> Example:
    """``moment_retrieval_datasets.py`` lines 24-78: the query video's frames in
    ``<video>/query``, every other folder a candidate clip, ``positive*`` the label. V2 lists
    the folders in ``os.listdir`` order; here they are sorted (the same on every machine)."""
    text, video_path = _need(row, dataset, "query", "video_path")
    name = os.path.splitext(os.path.basename(video_path))[0]
    query = RowItem(v2_text(MOMENT_QUERY, text, video=True), video=f"{name}/query")
    clips = sorted(p.name for p in (root / name).iterdir() if p.is_dir() and p.name != "query")
    target = v2_text(VIDEO_TARGET, video=True)
    candidates = tuple(RowItem(target, video=f"{name}/{c}", name=f"{name}/{c}") for c in clips)
    relevance = tuple(float(c.startswith("positive")) for c in clips)
    return Example(query, candidates, relevance, number)


def _beir(folder: Path, dataset: str, hashed: bool) -> LoadedRows | None:
    """``vidore_dataset.py`` / ``visrag_dataset.py``: queries, qrels with score > 0
    (``load_qrels_mapping``), the corpus in its order; pages named by corpus id."""
    parts = {part: _part(folder, part) for part in ("queries", "qrels", "corpus")}
    if not all(parts.values()):
        return None
    qrels: dict[str, dict[str, float]] = {}
    for row in _rows(parts["qrels"], dataset):
        query_id, corpus_id, score = _need(row, dataset, "query-id", "corpus-id", "score")
        if score > 0:
            qrels.setdefault(str(query_id), {})[str(corpus_id)] = float(score)
    page = _hashed_page if hashed else (lambda corpus_id: f"{corpus_id}.png")
    target = v2_text(DOC_TARGET, image=True)
    examples = []
    for number, row in enumerate(_rows(parts["queries"], dataset)):
        query_id, text = _need(row, dataset, "query-id", "query")
        judged = qrels.get(str(query_id))
        if not judged:
            raise DataError(f"{dataset}: query {query_id!r} has no relevant page in qrels")
        pages = tuple(RowItem(target, image=page(c), name=c) for c in judged)
        examples.append(
            Example(RowItem(v2_text(DOC_QUERY, text)), pages, tuple(judged.values()), number)
        )
    corpus = [
        RowItem(target, image=page(str(cid)), name=str(cid))
        for (cid,) in (_need(r, dataset, "corpus-id") for r in _rows(parts["corpus"], dataset))
    ]
    return LoadedRows(examples, [], corpus)


def _part(folder: Path, part: str) -> list[Path]:
    inside = folder / part
    found = (
        sorted(inside.glob("*.parquet")) + sorted(inside.glob("*.jsonl")) if inside.is_dir() else []
    )
    return found or sorted(p for p in folder.glob(f"{part}*") if p.suffix in (".parquet", ".jsonl"))


def _hashed_page(image_name: str) -> str:
    """VisRAG's file name for a page: the first 50 characters of the name, ``_``, 8 hex digits
    of its md5, the extension (``visrag_dataset.py`` lines 29-33)."""
    base, ext = os.path.splitext(image_name)
    return base[:50] + "_" + hashlib.md5(image_name.encode("utf-8")).hexdigest()[:8] + ext


_BUILDERS: dict[str, Callable[[dict[str, Any], int, str], Example]] = {
    "video_classification": _video_class,
    "ssv2": _ssv2,
    **{parser: _caption_to_video(parser) for parser in CAPTION_QUERIES},
    "videomme": _videomme,
}
