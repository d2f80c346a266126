"""An OpenAI ``POST /v1/embeddings`` body, checked and turned into mmembed inputs.

Every refusal is an ``ApiError`` naming the field (``input[3]``, ``input[3][1]``,
``dimensions``...): 400 for a malformed body, 413 for one over a limit of ``ServeCfg``. Nothing
is decoded here beyond base64 and an image's header: the pixels are decoded by the library's
``load_image`` inside ``encode``, as for any other caller.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from ..errors import InputError
from ..inputs import Document, Image, Input, Table, Text, Video
from ..processors.image import image_size
from .config import ServeCfg
from .errors import ApiError

FIELDS = {"input", "model", "encoding_format", "dimensions", "user", "instruction", "prompt_name"}
ENCODING_FORMATS = ("float", "base64")
PROMPT_NAMES = ("query", "document")
PART_TYPES = ("text", "image_url", "video_url", "table")
_SCALARS = (str, int, float, bool, type(None))


@dataclass
class EmbedRequest:
    """A checked request: the items to embed and how to return them."""

    items: list[Input]  # one per element of ``input``, in order
    instruction: str | None  # given, or the model's for ``prompt_name``
    dimensions: int | None  # Matryoshka width asked for (None: the model's)
    encoding_format: str  # "float" or "base64"
    # temporary video files -> the request field they came from (errors name the field)
    temporaries: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        """Delete the temporary files."""
        for path in self.temporaries:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def describe(self, error: InputError, index: int) -> str:
        """``error`` as the client should read it: ``input[i]: reason``, no temporary path."""
        reason = error.reason
        for path, name in self.temporaries.items():
            reason = reason.replace(path, name).replace(os.path.basename(path), name)
        return f"input[{index}]: {reason}"


def parse(body: bytes, cfg: ServeCfg, model: Any) -> EmbedRequest:
    """Check ``body`` against OpenAI's schema and ``cfg``'s limits.

    Args:
        body: the raw request body (JSON).
        cfg: the limits.
        model: the served ``Embedder`` (its name, width and instructions).
    """
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise ApiError(400, f"the body must be a JSON object, got {_kind(request)}")
    unknown = sorted(set(request) - FIELDS)
    if unknown:
        raise ApiError(400, f"unrecognized request field {unknown[0]!r}", unknown[0])
    _check_model(request.get("model"), model.name)
    encoding = request.get("encoding_format") or "float"
    if encoding not in ENCODING_FORMATS:
        raise ApiError(
            400, f"encoding_format must be 'float' or 'base64', got {encoding!r}", "encoding_format"
        )
    dimensions = _dimensions(request.get("dimensions"), model.dim)
    instruction = _instruction(request, model, cfg)
    if "input" not in request:
        raise ApiError(400, "missing required field 'input'", "input")
    parsed = EmbedRequest([], instruction, dimensions, encoding)
    try:
        parsed.items = [
            _item(value, f"input[{i}]", cfg, parsed)
            for i, value in enumerate(_input_list(request["input"], cfg))
        ]
    except BaseException:
        parsed.close()
        raise
    return parsed


def _check_model(name: Any, served: str) -> None:
    if name is not None and name != served:
        raise ApiError(
            404,
            f"the model {name!r} is not served here; this server serves {served!r}",
            "model",
            "model_not_found",
        )


def _dimensions(value: Any, width: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"dimensions must be an integer, got {_kind(value)}", "dimensions")
    if not 1 <= value <= width:
        raise ApiError(
            400, f"dimensions must be between 1 and the model's {width}, got {value}", "dimensions"
        )
    return value


def _instruction(request: dict, model: Any, cfg: ServeCfg) -> str | None:
    instruction, prompt = request.get("instruction"), request.get("prompt_name")
    if instruction is not None and prompt is not None:
        raise ApiError(400, "give instruction or prompt_name, not both", "prompt_name")
    if prompt is not None:
        if prompt not in PROMPT_NAMES:
            raise ApiError(
                400, f"prompt_name must be 'query' or 'document', got {prompt!r}", "prompt_name"
            )
        return model.query_instruction if prompt == "query" else model.document_instruction
    if instruction is None:
        return None
    if not isinstance(instruction, str):
        raise ApiError(
            400, f"instruction must be a string, got {_kind(instruction)}", "instruction"
        )
    _check_length(instruction, "instruction", cfg)
    return instruction or None


def _input_list(value: Any, cfg: ServeCfg) -> list:
    if isinstance(value, (str, dict)):
        return [value]
    if not isinstance(value, list):
        raise ApiError(400, f"input must be a string or a list, got {_kind(value)}", "input")
    if not value:
        raise ApiError(400, "input is an empty list: give at least one item", "input")
    if _is_token_ids(value):
        raise ApiError(400, "input holds token ids; this server embeds text, not tokens", "input")
    if len(value) > cfg.max_items:
        raise ApiError(
            413, f"input has {len(value)} items, above the limit of {cfg.max_items}", "input"
        )
    return value


def _is_token_ids(value: list) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _item(value: Any, where: str, cfg: ServeCfg, request: EmbedRequest) -> Input:
    """One element of ``input``: a string, a content part, or a list of parts (a document)."""
    if isinstance(value, str):
        return Text(_check_length(value, where, cfg))
    if isinstance(value, dict):
        return _part(value, where, cfg, request, in_document=False)
    if isinstance(value, list):
        if not value:
            raise ApiError(400, f"{where}: an empty list of content parts", where)
        if _is_token_ids(value):
            raise ApiError(400, f"{where}: token ids are not accepted; send text", where)
        if len(value) > cfg.max_document_parts:
            raise ApiError(
                413,
                f"{where}: {len(value)} parts, above the limit of {cfg.max_document_parts}",
                where,
            )
        parts = [
            _part(part, f"{where}[{j}]", cfg, request, in_document=True)
            for j, part in enumerate(value)
        ]
        return Document(parts)
    raise ApiError(
        400,
        f"{where}: expected a string, a content part or a list of parts, got {_kind(value)}",
        where,
    )


def _part(value: Any, where: str, cfg: ServeCfg, request: EmbedRequest, in_document: bool):
    if in_document and isinstance(value, str):
        return Text(_check_length(value, where, cfg))  # a plain string part is a text part
    if not isinstance(value, dict):
        raise ApiError(400, f"{where}: a content part must be an object, got {_kind(value)}", where)
    kind = value.get("type")
    if kind not in PART_TYPES:
        raise ApiError(
            400, f"{where}: unknown content part type {kind!r}; use {', '.join(PART_TYPES)}", where
        )
    if kind == "text":
        text = value.get("text")
        if not isinstance(text, str):
            raise ApiError(400, f"{where}: a text part needs a string 'text'", where)
        return Text(_check_length(text, where, cfg))
    if kind == "table":
        return Table(_table(value.get("table"), where, cfg))
    if kind == "image_url":
        return Image(_image(_url(value, "image_url", where), where, cfg))
    if in_document:
        raise ApiError(400, f"{where}: a document holds text, image_url and table parts", where)
    return _video(value, where, cfg, request)


def _url(part: dict, kind: str, where: str) -> str:
    inner = part.get(kind)
    url = inner.get("url") if isinstance(inner, dict) else inner
    if not isinstance(url, str) or not url:
        raise ApiError(400, f"{where}: a {kind} part needs {{{kind!r}: {{'url': ...}}}}", where)
    return url


def _image(url: str, where: str, cfg: ServeCfg) -> bytes:
    data = _fetch(url, "image", where, cfg, cfg.max_body_bytes)
    try:
        width, height = image_size(data)
    except InputError as error:
        status = 413 if isinstance(error.__cause__, PILImage.DecompressionBombError) else 400
        raise ApiError(status, f"{where}: {error.reason}", where) from None
    if width * height > cfg.max_image_pixels:
        raise ApiError(
            413,
            f"{where}: the image has {width}x{height} pixels, above the limit of "
            f"{cfg.max_image_pixels}",
            where,
        )
    return data


def _video(value: dict, where: str, cfg: ServeCfg, request: EmbedRequest) -> Video:
    frames = value.get("num_frames", 8)
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames:
        raise ApiError(400, f"{where}: num_frames must be a positive integer", where)
    if frames > cfg.max_video_frames:
        raise ApiError(
            413, f"{where}: num_frames {frames} is above the limit of {cfg.max_video_frames}", where
        )
    url = _url(value, "video_url", where)
    local = _allowed_file(url, where, cfg) if url.startswith("file:") else None
    if local is not None:
        if local.stat().st_size > cfg.max_video_bytes:
            raise ApiError(413, f"{where}: the video is over {_mib(cfg.max_video_bytes)}", where)
        return Video(str(local), frames)
    data = _fetch(url, "video", where, cfg, cfg.max_video_bytes)
    handle, path = tempfile.mkstemp(prefix="mmembed-serve-", suffix=".mp4")
    request.temporaries[path] = where
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    return Video(path, frames)


def _fetch(url: str, kind: str, where: str, cfg: ServeCfg, limit: int) -> bytes:
    """The bytes behind a ``data:`` URL, or a ``file:`` URL under ``--allow-files``."""
    if url.startswith("file:"):
        path = _allowed_file(url, where, cfg)
        if path.stat().st_size > limit:
            raise ApiError(413, f"{where}: the {kind} file is over {_mib(limit)}", where)
        return path.read_bytes()
    if not url.startswith("data:"):
        scheme = url.split(":", 1)[0] if ":" in url else url[:20]
        raise ApiError(
            400,
            f"{where}: {scheme!r} URLs are not fetched; send the {kind} as a data: URL "
            f"(data:{kind}/...;base64,...)",
            where,
        )
    header, comma, payload = url[5:].partition(",")
    media, *options = header.split(";")
    if not comma or "base64" not in options:
        raise ApiError(400, f"{where}: expected a data:{kind}/...;base64,... URL", where)
    if not media.startswith(f"{kind}/"):
        raise ApiError(
            400, f"{where}: a {kind}_url needs a {kind}/* data URL, got {media!r}", where
        )
    if len(payload) * 3 // 4 > limit:
        raise ApiError(413, f"{where}: the {kind} is over {_mib(limit)}", where)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{where}: the {kind} data URL is not valid base64", where) from None
    if not data:
        raise ApiError(400, f"{where}: the {kind} data URL is empty", where)
    return data


def _allowed_file(url: str, where: str, cfg: ServeCfg) -> Path:
    """A ``file:`` URL's path, symlinks resolved, if it lies under ``cfg.allow_files``."""
    if cfg.allow_files is None:
        raise ApiError(
            400, f"{where}: file: URLs are off (start the server with --allow-files DIR)", where
        )
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise ApiError(400, f"{where}: a file: URL names a local path (file:///...)", where)
    root = Path(cfg.allow_files).resolve()
    try:
        path = Path(urllib.parse.unquote(parsed.path)).resolve(strict=True)
    except (OSError, RuntimeError):
        raise ApiError(400, f"{where}: no such file under the allowed folder", where) from None
    if not path.is_relative_to(root) or not path.is_file():
        raise ApiError(400, f"{where}: no such file under the allowed folder", where)
    return path


def _table(rows: Any, where: str, cfg: ServeCfg) -> list[dict]:
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ApiError(400, f"{where}: 'table' must be a non-empty list of row objects", where)
    columns = {key for row in rows for key in row}
    if len(rows) * max(len(columns), 1) > cfg.max_table_cells:
        raise ApiError(
            413,
            f"{where}: the table has {len(rows)}x{len(columns)} cells, above the limit of "
            f"{cfg.max_table_cells}",
            where,
        )
    for row in rows:
        for key, cell in row.items():
            if not isinstance(cell, _SCALARS):
                raise ApiError(
                    400, f"{where}: cell {key!r} holds {_kind(cell)}; cells are scalars", where
                )
    return rows


def _check_length(text: str, where: str, cfg: ServeCfg) -> str:
    if len(text) > cfg.max_text_chars:
        raise ApiError(
            413,
            f"{where}: {len(text)} characters, above the limit of {cfg.max_text_chars}",
            where,
        )
    return text


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _mib(count: int) -> str:
    return f"{count / 2**20:g} MiB"
