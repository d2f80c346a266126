"""MMEB rows in the official on-disk format, and fixtures built from them (no test functions).

Sources, all in TIGER-AI-Lab/VLM2Vec (``v1`` branch = 28fdbdd, ``main`` = 6e1e1d4):

* Schema: ``qry_text``, ``qry_img_path``, ``tgt_text``, ``tgt_img_path`` (v1 ``eval.py``
  lines 84-97 and 159-162); image paths are relative to the folder ``images.zip`` unzips to,
  and start with the dataset's name.
* Instruction strings: ``archive/instruction_dict.py`` (v1), the first phrasing of each set.
* Layout of the text: ``<|image_1|>`` first, then ``\\n``, the instruction and the query
  text, and a closing ``\\n``. VLM2Vec-V2 rebuilds these strings from its split
  instruction/text columns "to stay consistent with v1 eval": ``image_cls_dataset.py``
  lines 17-20, ``image_qa_dataset.py`` lines 17-20, ``image_i2t_eval.py`` lines 17-20,
  ``image_t2i_eval.py`` lines 17-21 and 26-36, ``image_i2i_vg_dataset.py`` lines 17-20 and
  34-38 (``src/data/eval_dataset/`` on main). Grounding candidates without a caption get no
  closing ``\\n`` (``image_i2i_vg_dataset.py`` line 38).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from mmembed.inputs import Document, Image, Text

ASSETS = Path(__file__).resolve().parent.parent / "assets"

IMG = "<|image_1|>"

# (dataset, meta-task, row) with image names from the asset photos (prefixed by the dataset).
GOLDEN_ROWS: list[tuple[str, str, dict]] = [
    (
        "ImageNet-1K",
        "Classification",
        {
            "qry_text": f"{IMG}\nRepresent the given image for classification\n",
            "qry_img_path": "ImageNet-1K/cat.jpg",
            "tgt_text": ["tabby cat", "espresso", "space shuttle"],
            "tgt_img_path": ["", "", ""],
        },
    ),
    (
        "N24News",
        "Classification",
        {
            "qry_text": f"{IMG}\nRepresent the given news image with the following caption for "
            "domain classification: An orange dahlia at the summer flower show.\n",
            "qry_img_path": "N24News/flower.jpg",
            "tgt_text": ["Style", "Science", "Sports"],
            "tgt_img_path": ["", "", ""],
        },
    ),
    (
        "HatefulMemes",
        "Classification",
        {
            "qry_text": f"{IMG}\nRepresent the given image for binary classification to "
            "determine whether it constitutes hateful speech or not\n",
            "qry_img_path": "HatefulMemes/officer.jpg",
            "tgt_text": ["No", "Yes"],
            "tgt_img_path": ["", ""],
        },
    ),
    (
        "OK-VQA",
        "VQA",
        {
            "qry_text": f"{IMG}\nRepresent the given image with the following question: "
            "What drink is served in this cup?\n",
            "qry_img_path": "OK-VQA/coffee.jpg",
            "tgt_text": ["espresso", "tea", "milk"],
            "tgt_img_path": ["", "", ""],
        },
    ),
    (
        "DocVQA",
        "VQA",
        {
            "qry_text": f"{IMG}\nRepresent the given image with the following question: "
            "What is the person standing behind?\n",
            "qry_img_path": "DocVQA/camera.jpg",
            "tgt_text": ["a camera", "a car", "a desk"],
            "tgt_img_path": ["", "", ""],
        },
    ),
    (
        "ChartQA",
        "VQA",
        {
            "qry_text": f"{IMG}\nRepresent the given image with the following question: "
            "What stands on the launch pad?\n",
            "qry_img_path": "ChartQA/rocket.jpg",
            "tgt_text": ["a rocket", "a tower"],
            "tgt_img_path": ["", ""],
        },
    ),
    (
        "MSCOCO_t2i",
        "Retrieval",
        {
            "qry_text": "Find me an everyday image that matches the given caption: "
            "A cup of espresso coffee on a red saucer.\n",
            "qry_img_path": "",
            "tgt_text": [f"{IMG}\nRepresent the given image.\n"] * 3,
            "tgt_img_path": [
                "MSCOCO_t2i/coffee.jpg",
                "MSCOCO_t2i/cat.jpg",
                "MSCOCO_t2i/rocket.jpg",
            ],
        },
    ),
    (
        "MSCOCO_i2t",
        "Retrieval",
        {
            "qry_text": f"{IMG}\nFind an image caption describing the given everyday image.\n",
            "qry_img_path": "MSCOCO_i2t/palace.jpg",
            "tgt_text": [
                "A chinese pagoda on a hill above a lake.",
                "An orange dahlia flower.",
                "A rocket on the launch pad at dusk.",
            ],
            "tgt_img_path": ["", "", ""],
        },
    ),
    (
        "WebQA",
        "Retrieval",
        {
            "qry_text": "Find a Wikipedia image that answers this question: "
            "What colour is the pagoda's roof?\n",
            "qry_img_path": "",
            "tgt_text": [
                f"{IMG}\nRepresent the given Wikipedia image with related text information: "
                "Pagoda above the West Lake.\n",
                f"{IMG}\nRepresent the given Wikipedia image with related text information: "
                "A dahlia in bloom.\n",
            ],
            "tgt_img_path": ["WebQA/palace.jpg", "WebQA/flower.jpg"],
        },
    ),
    (
        "MSCOCO",
        "Grounding",
        {
            "qry_text": f"{IMG}\nSelect the portion of the image that isolates the object "
            'labeled as "cat"\n',
            "qry_img_path": "MSCOCO/cat.jpg",
            "tgt_text": [f"{IMG}\nRepresent the given cropped image of the object"] * 2,
            "tgt_img_path": ["MSCOCO/cat.jpg", "MSCOCO/coffee.jpg"],
        },
    ),
    (
        "RefCOCO",
        "Grounding",
        {
            "qry_text": f"{IMG}\nSelect the portion of the image that follows the language "
            'expressions: "the woman in the navy cap"\n',
            "qry_img_path": "RefCOCO/officer.jpg",
            "tgt_text": [f"{IMG}\nRepresent the given cropped image of the object"] * 2,
            "tgt_img_path": ["RefCOCO/officer.jpg", "RefCOCO/camera.jpg"],
        },
    ),
    (
        "RefCOCO-Matching",
        "Grounding",
        {
            "qry_text": f"{IMG}\nSelect the portion of the image that follows the language "
            'expressions: "the rocket"\n',
            "qry_img_path": "RefCOCO-Matching/rocket.jpg",
            "tgt_text": [
                f"{IMG}\nSelect the portion of the image that follows the language "
                'expressions: "the rocket"\n',
                f"{IMG}\nSelect the portion of the image that follows the language "
                'expressions: "the lake"\n',
            ],
            "tgt_img_path": ["RefCOCO-Matching/rocket.jpg", "RefCOCO-Matching/palace.jpg"],
        },
    ),
]


def vlm2vec_text(text: str, image_token: str = "<|image_pad|>") -> str:
    """What VLM2Vec hands the Qwen2-VL processor: the row's text with the Phi-3.5-V placeholder
    replaced in place (v1 ``src/dataset.py`` lines 127-132; ``src/model_utils.py`` lines 29-34
    map qwen2_vl to ``<|image_pad|>``)."""
    return text.replace(IMG, image_token)


def copy_photos(images: Path, dataset: str) -> None:
    """The asset photos under ``images/<dataset>/``, as the official zip lays them out."""
    (images / dataset).mkdir(parents=True, exist_ok=True)
    for photo in sorted((ASSETS / "images").glob("*.jpg")):
        shutil.copyfile(photo, images / dataset / photo.name)


def write_golden_fixture(folder: Path) -> Path:
    """The 12 golden rows as MMEB data: ``<dataset>.jsonl`` plus ``eval_images/``."""
    for dataset, _, row in GOLDEN_ROWS:
        copy_photos(folder / "eval_images", dataset)
        (folder / f"{dataset}.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    return folder


def write_duplicate_fixture(folder: Path, duplicate: bool = True) -> Path:
    """Four datasets (one per meta-task) in the official format from the asset photos.

    Each query has every photo's caption, or every photo, as candidates, the correct one first. With
    ``duplicate``, queries 0, 2 and 4 also carry their positive a second time, in place of the
    last negative, as happens in the released data when a label or image repeats; without it
    the rows are the same minus the repeat.
    """
    manifest = json.loads((ASSETS / "manifest.json").read_text())
    photos = [e for e in manifest if e["modality"] == "image"]
    names = [Path(e["path"]).name for e in photos]
    captions = [e["caption"] for e in photos]

    def candidates(values: list[str], i: int) -> list[str]:
        ordered = values[i:] + values[:i]  # correct candidate first
        if duplicate and i % 2 == 0 and i < 6:
            ordered[-1] = ordered[0]
        return ordered

    blank = [""] * len(names)
    sets = {
        "ImageNet-1K": [
            {
                "qry_text": f"{IMG}\nRepresent the given image for classification\n",
                "qry_img_path": f"ImageNet-1K/{names[i]}",
                "tgt_text": candidates(captions, i),
                "tgt_img_path": blank,
            }
            for i in range(len(names))
        ],
        "OK-VQA": [
            {
                "qry_text": f"{IMG}\nRepresent the given image with the following question: "
                "What is shown in this photo?\n",
                "qry_img_path": f"OK-VQA/{names[i]}",
                "tgt_text": candidates(captions, i),
                "tgt_img_path": blank,
            }
            for i in range(len(names))
        ],
        "MSCOCO_t2i": [
            {
                "qry_text": "Find me an everyday image that matches the given caption: "
                f"{captions[i]}\n",
                "qry_img_path": "",
                "tgt_text": [f"{IMG}\nRepresent the given image.\n"] * len(names),
                "tgt_img_path": [f"MSCOCO_t2i/{n}" for n in candidates(names, i)],
            }
            for i in range(len(names))
        ],
        "MSCOCO": [
            {
                "qry_text": f"{IMG}\nSelect the portion of the image that isolates the object "
                f'labeled as "{captions[i]}"\n',
                "qry_img_path": f"MSCOCO/{names[i]}",
                "tgt_text": [f"{IMG}\nRepresent the given cropped image of the object"]
                * len(names),
                "tgt_img_path": [f"MSCOCO/{n}" for n in candidates(names, i)],
            }
            for i in range(len(names))
        ],
    }
    for dataset, rows in sets.items():
        copy_photos(folder / "eval_images", dataset)
        lines = "".join(json.dumps(row) + "\n" for row in rows)
        (folder / f"{dataset}.jsonl").write_text(lines, encoding="utf-8")
    return folder


# -- The official scoring, written independently of mmembed from VLM2Vec's code ------------------


def exact_scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``np.dot(matrix, query)`` as the official code means it, with equal rows scoring exactly
    equal. VLM2Vec calls ``np.dot`` on float32, and BLAS may score two equal rows one ulp apart
    (OpenBLAS's gemv treats the rows after the last full block differently), so a repeat of the
    positive can beat it; the rule intends a tie, which argmax gives to the first."""
    return (matrix.astype(np.float64) * query.astype(np.float64)).sum(axis=1)


def official_v1_hit_at_1(rows: list[dict], vector) -> float:
    """VLM2Vec V1 (``eval.py`` lines 144-169 on ``v1``): candidates keyed by
    ``(tgt_text, tgt_img_path)``, ``pred = np.argmax(scores)``, correct when ``pred == 0``."""
    correct = 0
    for row in rows:
        query = vector(row["qry_text"], row["qry_img_path"])
        targets = np.stack(
            [vector(t, p) for t, p in zip(row["tgt_text"], row["tgt_img_path"], strict=True)]
        )
        correct += int(np.argmax(exact_scores(targets, query)) == 0)
    return correct / len(rows)


def v2_name(text: str, image: str) -> str:
    """V2's candidate name: ``cand_names`` holds the image path, else the label text."""
    return image or text


def official_v2_predictions(
    rows: list[dict], vector, eval_type: str, extra: list[tuple[str, str]] = ()
) -> list[dict]:
    """VLM2Vec-V2's ``pred_dicts`` (``eval.py`` lines 302-343 on ``main``): candidate vectors
    keyed by name (the first of a name wins, ``generate_cand_dataset``), ``np.argsort(-scores)``
    against the row's names ("local") or every name ("global"), labels by name. The sort is
    stable here: V2 passes no ``kind``, and numpy 2 on AVX-512 CPUs orders ties arbitrarily."""
    cand: dict[str, np.ndarray] = {}
    for row in rows:
        for t, p in zip(row["tgt_text"], row["tgt_img_path"], strict=True):
            cand.setdefault(v2_name(t, p), vector(t, p))
    for t, p in extra:
        cand.setdefault(v2_name(t, p), vector(t, p))
    keys = list(cand)
    predictions = []
    for row in rows:
        query = vector(row["qry_text"], row["qry_img_path"])
        names = [v2_name(t, p) for t, p in zip(row["tgt_text"], row["tgt_img_path"], strict=True)]
        grades = row.get("tgt_relevance") or [1] + [0] * (len(names) - 1)
        labels = [n for n, g in zip(names, grades, strict=True) if g > 0]
        pool = keys if eval_type == "global" else names
        scores = exact_scores(np.stack([cand[n] for n in pool]), query)
        ranked = [pool[i] for i in np.argsort(-scores, kind="stable")]
        predictions.append({"prediction": ranked, "label": labels, "rel_scores": None})
    return predictions


def official_v2_scores(
    rows: list[dict], vector, eval_type: str, extra: list[tuple[str, str]] = ()
) -> dict[str, float]:
    """V2's ``RankingMetrics`` over ``official_v2_predictions``."""
    predictions = official_v2_predictions(rows, vector, eval_type, extra)
    return _v2_ranking_metrics([(p["prediction"], p["label"]) for p in predictions])


def official_v1_predictions(rows: list[dict], vector) -> list[str]:
    """VLM2Vec V1's ``*_pred.txt`` lines: the argmax candidate as a ``(text, path)`` tuple."""
    lines = []
    for row in rows:
        query = vector(row["qry_text"], row["qry_img_path"])
        pairs = list(zip(row["tgt_text"], row["tgt_img_path"], strict=True))
        targets = np.stack([vector(t, p) for t, p in pairs])
        lines.append(f"{pairs[int(np.argmax(exact_scores(targets, query)))]}\n")
    return lines


def _v2_ranking_metrics(cases) -> dict[str, float]:
    """``RankingMetrics.evaluate`` for binary labels (``metrics.py`` lines 24-266)."""
    out: dict[str, list[float]] = {}
    for prediction, labels in cases:
        labels = list(set(labels))
        for k in (1, 5, 10):
            top = prediction[:k]
            hits = len(set(top) & set(labels))
            out.setdefault(f"hit@{k}", []).append(1.0 if hits else 0.0)
            out.setdefault(f"recall@{k}", []).append(hits / len(labels))
            gains = [1 if p in labels else 0 for p in top]
            dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
            ideal = sum(1 / np.log2(i + 2) for i in range(min(len(labels), k)))
            out.setdefault(f"ndcg@{k}", []).append(dcg / ideal)
            rr = next((1 / (i + 1) for i, p in enumerate(top) if p in labels), 0.0)
            out.setdefault(f"mrr@{k}", []).append(rr)
    return {name: float(np.mean(values)) for name, values in out.items()}


# -- A fixture with one dataset per V1 and V2 task family --------------------------------------

# dataset -> family (V1 meta-task or V2 task family)
FAMILIES = {
    "ImageNet-1K": "V1 classification",
    "OK-VQA": "V1 VQA",
    "MSCOCO_t2i": "V1 retrieval",
    "MSCOCO": "V1 grounding",
    "SmthSmthV2": "V2 video classification (local)",
    "HMDB51": "V2 video classification (global)",
    "Video-MME": "V2 video QA (local)",
    "MSR-VTT": "V2 video retrieval (global)",
    "QVHighlight": "V2 moment retrieval (local)",
    "ViDoRe_arxivqa": "V2 ViDoRe (global)",
    "VisRAG_ArxivQA": "V2 VisRAG (global)",
}
GLOBAL_SETS = {"HMDB51", "MSR-VTT", "ViDoRe_arxivqa", "VisRAG_ArxivQA"}  # V2's eval_type global


class HashEmbedder:
    """A fixed vector per input: one of ``levels`` basis vectors (ties everywhere), or a
    continuous random one when ``levels`` is None."""

    def __init__(self, levels: int | None, dim: int = 8):
        self.levels, self.dim, self.name = levels, dim, f"hash-{levels}"

    def key(self, item) -> str:
        if isinstance(item, Text):
            return item.text
        if isinstance(item, Image):
            return f"I:{Path(str(item.source)).name}"
        assert isinstance(item, Document)
        return "|".join(self.key(s) if isinstance(s, Image) else str(s) for s in item.segments)

    def vector(self, item) -> np.ndarray:
        digest = hashlib.sha256(self.key(item).encode()).digest()
        seed = int.from_bytes(digest[:8], "little")
        if self.levels is not None:
            basis = np.random.default_rng(7).standard_normal((self.levels, self.dim))
            vector = basis[seed % self.levels]
        else:
            vector = np.random.default_rng(seed).standard_normal(self.dim)
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    def encode(self, items, instruction=None, batch_size=32, normalize=True, **_):
        return np.stack([self.vector(item) for item in items])


def _rows(dataset: str, rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    """Official-format rows for one dataset, and extra corpus entries."""
    labels = [f"{dataset} label {i}" for i in range(7)]
    rows: list[dict] = []
    for q in range(8):
        query = f"{dataset} query {q}"
        if dataset in GLOBAL_SETS:
            positives = 1 + (q % 3 == 0 and dataset.startswith(("ViDoRe", "VisRAG")))
            chosen = [str(x) for x in rng.choice(labels, size=positives, replace=False)]
            rows.append(_row(query, chosen, dataset))
            continue
        chosen = [str(x) for x in rng.choice(labels, size=5, replace=False)]
        if q % 4 == 1:
            chosen[-1] = chosen[0]  # a repeated positive, as in the release
        rows.append(_row(query, chosen, dataset))
    extra = [{"tgt_text": label, "tgt_img_path": ""} for label in labels]
    return rows, extra if dataset == "HMDB51" else []


def _row(query: str, texts: list[str], dataset: str) -> dict:
    images = dataset == "MSCOCO_t2i"  # image candidates: V1 keys (text, path), V2 names paths
    return {
        "qry_text": query,
        "qry_img_path": "",
        "tgt_text": ["<|image_1|> Represent the given image."] * len(texts) if images else texts,
        "tgt_img_path": [f"{dataset}/{t.split()[-1]}.jpg" for t in texts]
        if images
        else [""] * len(texts),
        "tgt_relevance": [1] * len(texts)
        if dataset in GLOBAL_SETS
        else [1] + [0] * (len(texts) - 1),
    }


def write_family_fixture(root: Path) -> dict[str, tuple[list[dict], list[dict]]]:
    """One dataset per task family in the official row format (``corpus.jsonl`` for the extra
    corpus of a global set); returns dataset -> (rows, extra corpus)."""
    rng = np.random.default_rng(0)
    data = {}
    for dataset in FAMILIES:
        rows, extra = _rows(dataset, rng)
        data[dataset] = (rows, extra)
        (root / dataset).mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(r) + "\n" for r in rows)
        (root / dataset / "test-00000-of-00001.jsonl").write_text(lines)
        if extra:
            (root / dataset / "corpus.jsonl").write_text(
                "".join(json.dumps(e) + "\n" for e in extra)
            )
    return data
