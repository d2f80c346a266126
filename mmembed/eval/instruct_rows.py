"""MMEB rows that keep the instruction apart (MMEB_Test_Instruct), read for every model.

``ziyjiang/MMEB_Test_Instruct`` holds MMEB's 36 image sets with the query instruction in its
own column: ``qry_inst``, ``qry_text`` (the query text alone), ``qry_img_path``, ``tgt_inst``,
``tgt_text`` (candidate texts, or captions), ``tgt_img_path``. Both references read these rows:

* VLM2Vec-V2 rebuilds MMEB-eval's joined strings from them, "to stay consistent with v1 eval"
  (TIGER-AI-Lab/VLM2Vec main 6e1e1d4, ``src/data/eval_dataset/image_cls_dataset.py``,
  ``image_qa_dataset.py``, ``image_i2t_eval.py``, ``image_t2i_eval.py``,
  ``image_i2i_vg_dataset.py``, each ``data_prepare``, with ``process_input_text`` of
  ``src/model/processor.py``): that string is ``RowItem.text``, so every model reads these rows
  as it reads MMEB-eval's.
* Qwen3-VL-Embedding's MMEB code (QwenLM/Qwen3-VL-Embedding 8ce3aab,
  ``src/evaluation/mmeb_v2/data/datasets/image_*.py``) gives its model the instruction
  (``<|image_1|>`` removed, stripped) as the system message and the query text alone; its
  candidates carry no instruction, and their text is the caption only: ``RowItem.instruction``
  and ``RowItem.plain``, read when the model asks for them (``data.to_input``, ``"split"``).

Each set's parser is the one both references' ``image.yaml`` name.
"""

from __future__ import annotations

from typing import Any

from .data import Example, RowItem
from .data import _as_list as as_list
from .data import _broadcast as broadcast
from .data import _FieldError as FieldError
from .data import _text as text_field

IMG = "<|image_1|>"

INSTRUCT_PARSERS: dict[str, str] = {
    **dict.fromkeys(
        [
            "ImageNet-1K",
            "N24News",
            "HatefulMemes",
            "VOC2007",
            "SUN397",
            "Place365",
            "ImageNet-A",
            "ImageNet-R",
            "ObjectNet",
            "Country211",
        ],
        "image_cls",
    ),
    **dict.fromkeys(
        [
            "OK-VQA",
            "A-OKVQA",
            "DocVQA",
            "InfographicsVQA",
            "ChartQA",
            "Visual7W",
            "ScienceQA",
            "VizWiz",
            "GQA",
            "TextVQA",
        ],
        "image_qa",
    ),
    **dict.fromkeys(["MSCOCO_i2t", "VisualNews_i2t"], "image_i2t"),
    **dict.fromkeys(
        ["VisDial", "MSCOCO_t2i", "VisualNews_t2i", "WebQA", "EDIS", "Wiki-SS-NQ"], "image_t2i"
    ),
    **dict.fromkeys(
        [
            "CIRR",
            "NIGHTS",
            "OVEN",
            "FashionIQ",
            "MSCOCO",
            "RefCOCO",
            "RefCOCO-Matching",
            "Visual7W-Pointing",
        ],
        "image_i2i_vg",
    ),
}
"""MMEB set -> the parser both references read its MMEB_Test_Instruct rows with."""


def _joined(instruction: str, text: str = "") -> str:
    """``process_input_text(instruction, text=text, add_image_token=True)`` with V2's
    ``.replace(" \\n", "\\n")``: the image placeholder, a space, the instruction, the text."""
    prompt = f"{instruction} {text}" if text else instruction
    return f"{IMG} {prompt}".replace(" \n", "\n")


def parse_instruct_row(
    row: dict[str, Any], number: int, dataset: str, required: set[str] | frozenset[str]
) -> Example:
    """One MMEB_Test_Instruct row as an ``Example`` (the first candidate correct).

    Raises:
        FieldError: a field has the wrong type, the candidate lists disagree in length, or
            the dataset has no known parser.
    """
    parser = INSTRUCT_PARSERS.get(dataset)
    if parser is None:
        raise FieldError("qry_inst", f"no MMEB_Test_Instruct parser is known for {dataset!r}")
    needed = ["qry_inst", "qry_text", "tgt_text"]
    needed += ["tgt_inst", "tgt_img_path"] if parser in ("image_t2i", "image_i2i_vg") else []
    needed += [] if parser == "image_t2i" else ["qry_img_path"]
    for column in needed:
        if column not in row:
            raise FieldError(column, f"missing: the {parser} parser reads it")
    required = set(required) | set(needed)  # none of them may be null
    instruction = text_field(row, "qry_inst", required)
    text = text_field(row, "qry_text", required)
    own = instruction.replace(IMG, "").strip()  # what Qwen3-VL-Embedding's code keeps
    if parser == "image_t2i":
        joined = f"{instruction} {text}\n" + ("\n" if dataset == "VisDial" else "")
        query = RowItem(joined, instruction=own, plain=text)
    else:
        kept = instruction.replace(IMG, "")
        if parser in ("image_qa", "image_i2i_vg"):
            kept = "\n" + kept.strip()
        image = text_field(row, "qry_img_path", required)
        query = RowItem(_joined(kept, text) + "\n", image, instruction=own, plain=text)
    texts = as_list(row, "tgt_text", required)
    if parser in ("image_cls", "image_qa", "image_i2t"):
        candidates = tuple(RowItem(t, plain=t) for t in texts)
    else:
        images = as_list(row, "tgt_img_path", required)
        texts = broadcast(texts, len(images), "tgt_text")
        candidates = _image_candidates(row, parser, texts, images, required)
    if not candidates:
        raise FieldError("tgt_text", "no candidates")
    return Example(query, candidates, (1.0,) + (0.0,) * (len(candidates) - 1), number)


def _image_candidates(
    row: dict[str, Any],
    parser: str,
    captions: list[str],
    images: list[str],
    required: set[str] | frozenset[str],
) -> tuple[RowItem, ...]:
    """Image candidates: V2's joined text (the candidate instruction, then the caption when
    the set has captions) and Qwen3-VL-Embedding's plain caption (stripped for t2i sets)."""
    kept = text_field(row, "tgt_inst", required).replace(IMG, "")
    captioned = bool(captions) and bool(captions[0].strip())
    candidates = []
    for caption, image in zip(captions, images, strict=True):
        if captioned:
            joined = _joined(f"{kept} {caption}") + "\n"
        else:
            joined = _joined(kept) + ("\n" if parser == "image_t2i" else "")
        if parser == "image_t2i":  # each candidate's own caption, stripped
            plain = caption.strip()
        else:  # every caption as it is when the first has one, else none
            plain = caption if captioned else ""
        candidates.append(RowItem(joined, image, plain=plain))
    return tuple(candidates)
