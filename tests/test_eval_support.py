"""Shared helpers for the eval tests: fake embedders and a small MMEB-format fixture.

No test functions live here; the other ``test_eval_*`` modules import from it.

The fixture is built from real photos (scikit-image's sample images) in the MMEB-eval
layout. ``LookupEmbedder`` returns chosen vectors for each input, so every hit@1 below is
computed by hand from those vectors (see ``EXPECTED``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import skimage.data
from PIL import Image as PILImage

from mmembed.errors import InputError
from mmembed.inputs import Document, Image, Text, Video

E1, E2, E3, E4 = np.eye(4, dtype=np.float32)

CLS_INSTRUCTION = "<|image_1|>\nRepresent the given image for classification"
VQA_INSTRUCTION = "<|image_1|>\nRepresent the given image with the following question: "
T2I_INSTRUCTION = "Find me an everyday image that matches the given caption: "
I2T_INSTRUCTION = "<|image_1|>\nFind an image caption describing the given everyday image."
GRD_INSTRUCTION = (
    "<|image_1|>\nSelect the portion of the image that isolates the object of the given label: "
)
TGT_IMAGE = "<|image_1|>\nRepresent the given image."
TGT_CROP = "<|image_1|>\nRepresent the given cropped image of the object"

# Hand-computed hit@1 from the vectors in TABLE (see build_fixture), under VLM2Vec's official
# tie rule (the positive wins a tie; a repeat of the positive counts as the positive) ...
EXPECTED = {
    "ImageNet-1K": 3 / 4,  # hit, hit, miss (0.6 < 0.8), tie (0.707 = 0.707) won by the positive
    "OK-VQA": 2 / 3,  # hit, miss, hit
    "MSCOCO_t2i": 2 / 3,  # hit, hit, miss
    "MSCOCO_i2t": 2 / 2,  # hit, hit
    "Place365": 2 / 3,  # hit, hit, miss
    "MSCOCO": 2 / 2,  # hit, and the correct crop repeated among the candidates counts
}
EXPECTED_TIES = {"ImageNet-1K": 1}  # queries the tie rule decided
# ... and under ``--ties pessimistic`` (every tie is a miss).
EXPECTED_PESSIMISTIC = {**EXPECTED, "ImageNet-1K": 2 / 4, "MSCOCO": 1 / 2}
EXPECTED_TIES_PESSIMISTIC = {"ImageNet-1K": 1, "MSCOCO": 1}
LABELS = ["tabby cat", "space rocket", "cup of coffee", "astronaut"]


def key_of(item: object) -> str:
    """The lookup key of an mmembed input: its text, or the image's folder/name."""
    if isinstance(item, Text):
        return "T:" + item.text
    if isinstance(item, Image):
        return "I:" + _media_name(item.source)
    if isinstance(item, Document):
        parts = [_media_name(s.source) if isinstance(s, Image) else str(s) for s in item.segments]
        return "D:" + "|".join(parts)
    if isinstance(item, Video):
        return f"V:{len(item.source)} frames"
    raise InputError(f"unexpected input {type(item).__name__}")


def _media_name(source: object) -> str:
    path = Path(str(source))
    with PILImage.open(path) as image:  # the photo must really be there
        image.verify()
    return f"{path.parent.name}/{path.name}"


class LookupEmbedder:
    """An embedder following the CONTRACT that returns chosen vectors for known inputs."""

    def __init__(self, table: dict[str, np.ndarray], name: str = "lookup", delay: float = 0.0):
        self.table = table
        self.name = name
        self.dim = len(next(iter(table.values())))
        self.modalities = frozenset({"text", "image", "document"})
        self.delay = delay  # seconds slept per encode call (resume test)
        self.seen: list[str] = []  # keys of every item encoded

    def vector(self, item: object) -> np.ndarray:
        key = key_of(item)
        self.seen.append(key)
        if key not in self.table:
            raise InputError(f"no vector chosen for {key!r}")
        return np.asarray(self.table[key], dtype=np.float32)

    def encode(
        self,
        items,
        instruction=None,
        batch_size=32,
        normalize=True,
        convert_to="numpy",
        show_progress_bar=None,
        on_error="raise",
    ):
        assert instruction is None and convert_to == "numpy"
        time.sleep(self.delay)
        rows = np.full((len(items), self.dim), np.nan, dtype=np.float32)
        errors = {}
        for index, item in enumerate(items):
            try:
                rows[index] = self.vector(item)
            except (InputError, OSError) as error:
                if on_error == "raise":
                    raise InputError(str(error), index) from error
                errors[index] = InputError(str(error), index)
        if normalize:
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows


class RandomEmbedder(LookupEmbedder):
    """Random unit vectors, fixed per input: what a model with unloaded weights looks like."""

    def __init__(self, dim: int = 64, seed: int = 0):
        super().__init__({"-": np.zeros(dim)}, name="random")
        self.seed = seed

    def vector(self, item: object) -> np.ndarray:
        key = key_of(item)
        digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        return rng.standard_normal(self.dim).astype(np.float32)


@dataclass
class Fixture:
    data_dir: Path
    table: dict[str, np.ndarray]


def _save_photos(images: Path) -> None:
    photos = {
        "chelsea.jpg": skimage.data.chelsea(),
        "rocket.jpg": skimage.data.rocket(),
        "coffee.jpg": skimage.data.coffee(),
        "astronaut.jpg": skimage.data.astronaut(),
        "camera.png": skimage.data.camera(),
        "brick.png": skimage.data.brick(),
        "moon.png": skimage.data.moon(),
        "grass.png": skimage.data.grass(),
    }
    crops = {
        "coffee_cup.jpg": ("coffee.jpg", (150, 50, 450, 300)),
        "coffee_table.jpg": ("coffee.jpg", (0, 300, 600, 400)),
        "coffee_corner.jpg": ("coffee.jpg", (0, 0, 150, 150)),
        "astronaut_flag.jpg": ("astronaut.jpg", (0, 0, 160, 200)),
        "astronaut_face.jpg": ("astronaut.jpg", (160, 30, 300, 200)),
    }
    folders = ["ImageNet-1K", "OK-VQA", "MSCOCO_t2i", "MSCOCO_i2t", "Place365", "MSCOCO"]
    for folder in folders:
        (images / folder).mkdir(parents=True, exist_ok=True)
        for name, pixels in photos.items():
            PILImage.fromarray(pixels).save(images / folder / name)
    for name, (source, box) in crops.items():
        PILImage.open(images / "MSCOCO" / source).crop(box).save(images / "MSCOCO" / name)


def _rows(dataset: str, queries: list[tuple[str, str, list[str], list[str]]]) -> list[dict]:
    """MMEB rows; image names are prefixed with the dataset folder as in the release."""

    def path(name: str) -> str:
        return f"{dataset}/{name}" if name else ""

    return [
        {
            "qry_text": text,
            "qry_img_path": path(image),
            "tgt_text": tgt_texts,
            "tgt_img_path": [path(name) for name in tgt_images],
        }
        for text, image, tgt_texts, tgt_images in queries
    ]


def _write(data_dir: Path, dataset: str, rows: list[dict], fmt: str) -> None:
    if fmt == "parquet":
        (data_dir / dataset).mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_pylist(rows), data_dir / dataset / "test-00000-of-00001.parquet"
        )
    else:
        lines = "".join(json.dumps(row) + "\n" for row in rows)
        (data_dir / f"{dataset}.jsonl").write_text(lines, encoding="utf-8")


def _rotate(labels: list[str], first: str) -> list[str]:
    return [first] + [label for label in labels if label != first]


def build_fixture(data_dir: Path) -> Fixture:
    """Write the six-dataset fixture into ``data_dir`` and return the chosen vectors."""
    _save_photos(data_dir / "images")
    table: dict[str, np.ndarray] = {}

    def doc(folder: str, image: str, text: str) -> str:
        return f"D:{folder}/{image}|{text}"

    # ImageNet-1K (classification): image + instruction -> label texts (text-only candidates).
    cls_text = CLS_INSTRUCTION.removeprefix("<|image_1|>")
    rows = []
    for image, label, vector in [
        ("chelsea.jpg", "tabby cat", E1),
        ("rocket.jpg", "space rocket", E2),
        ("coffee.jpg", "cup of coffee", 0.6 * E3 + 0.8 * E1),  # closer to "tabby cat": miss
        ("astronaut.jpg", "astronaut", E4 + E2),  # ties "astronaut" and "space rocket"
    ]:
        rows.append((CLS_INSTRUCTION, image, _rotate(LABELS, label), []))
        table[doc("ImageNet-1K", image, cls_text)] = vector
    table.update({"T:" + label: vec for label, vec in zip(LABELS, (E1, E2, E3, E4), strict=True)})
    _write(data_dir, "ImageNet-1K", _rows("ImageNet-1K", rows), "parquet")

    # OK-VQA (VQA): image + question -> answer texts; a flat DATA_DIR/<name>.jsonl file.
    answers = {"cat": E1, "dog": E2, "espresso": E3, "tea": E4}
    table.update({"T:" + answer: vec for answer, vec in answers.items()})
    rows = []
    for image, question, candidates, vector in [
        ("chelsea.jpg", "What animal is this?", ["cat", "dog"], E1),
        ("coffee.jpg", "What drink is shown?", ["espresso", "tea"], 0.8 * E4 + 0.6 * E3),
        ("coffee.jpg", "What is in the cup?", ["espresso", "tea", "cat"], E3),
    ]:
        rows.append((VQA_INSTRUCTION + question, image, candidates, []))
        table[doc("OK-VQA", image, VQA_INSTRUCTION.removeprefix("<|image_1|>") + question)] = vector
    _write(data_dir, "OK-VQA", _rows("OK-VQA", rows), "jsonl")

    # MSCOCO_t2i (retrieval): text-only query -> image candidates with their own text.
    tgt_text = TGT_IMAGE.removeprefix("<|image_1|>")
    for image, vector in [
        ("chelsea.jpg", E1),
        ("rocket.jpg", E2),
        ("coffee.jpg", E3),
        ("camera.png", E4),
    ]:
        table[doc("MSCOCO_t2i", image, tgt_text)] = vector
    rows = []
    for caption, images, vector in [
        ("A cat lying on a blanket.", ["chelsea.jpg", "rocket.jpg", "coffee.jpg"], E1),
        ("A rocket on the launch pad.", ["rocket.jpg", "chelsea.jpg", "coffee.jpg"], E2),
        ("A man holding a camera.", ["camera.png", "chelsea.jpg", "rocket.jpg"], E1),  # miss
    ]:
        rows.append((T2I_INSTRUCTION + caption, "", [TGT_IMAGE] * len(images), images))
        table["T:" + T2I_INSTRUCTION + caption] = vector
    _write(data_dir, "MSCOCO_t2i", _rows("MSCOCO_t2i", rows), "parquet")

    # MSCOCO_i2t (retrieval): image query -> caption texts.
    i2t_text = I2T_INSTRUCTION.removeprefix("<|image_1|>")
    captions = {"A cat lying on a blanket.": E1, "A rocket on the launch pad.": E2}
    table.update({"T:" + caption: vec for caption, vec in captions.items()})
    rows = []
    for image, first, vector in [
        ("chelsea.jpg", "A cat lying on a blanket.", E1),
        ("rocket.jpg", "A rocket on the launch pad.", E2),
    ]:
        rows.append((I2T_INSTRUCTION, image, _rotate(list(captions), first), []))
        table[doc("MSCOCO_i2t", image, i2t_text)] = vector
    _write(data_dir, "MSCOCO_i2t", _rows("MSCOCO_i2t", rows), "parquet")

    # Place365 (OOD classification): image-only queries (no text besides the placeholder).
    scenes = ["lawn", "brick wall", "night sky"]
    table.update({"T:" + s: v for s, v in zip(scenes, (E3, E1, E2), strict=True)})
    rows = []
    for image, scene, vector in [
        ("brick.png", "brick wall", E1),
        ("moon.png", "night sky", E2),
        ("grass.png", "lawn", E1),
    ]:
        rows.append(("<|image_1|>", image, _rotate(scenes, scene), []))
        table[f"I:Place365/{image}"] = vector
    _write(data_dir, "Place365", _rows("Place365", rows), "jsonl")

    # MSCOCO (grounding): image + label -> cropped-image candidates with their own text.
    crop_text = TGT_CROP.removeprefix("<|image_1|>")
    crops = {
        "coffee_cup.jpg": E1,
        "coffee_table.jpg": E2,
        "coffee_corner.jpg": E4,
        "astronaut_flag.jpg": E3,
        "astronaut_face.jpg": E4,
    }
    table.update({doc("MSCOCO", crop, crop_text): vec for crop, vec in crops.items()})
    rows = []
    for image, label, candidates, vector in [
        ("coffee.jpg", "cup", ["coffee_cup.jpg", "coffee_table.jpg", "coffee_corner.jpg"], E1),
        (
            "astronaut.jpg",
            "flag",
            ["astronaut_flag.jpg", "astronaut_face.jpg", "astronaut_flag.jpg"],
            E3,
        ),
    ]:
        rows.append((GRD_INSTRUCTION + label, image, [TGT_CROP] * len(candidates), candidates))
        table[doc("MSCOCO", image, GRD_INSTRUCTION.removeprefix("<|image_1|>") + label)] = vector
    _write(data_dir, "MSCOCO", _rows("MSCOCO", rows), "parquet")
    return Fixture(data_dir, table)
