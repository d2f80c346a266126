"""``POST /v1/embeddings`` on a real uvicorn server (embeddings only, no index): the vectors
equal ``encode()``'s for every modality, the official ``openai`` client reads them, bad requests
get OpenAI's JSON errors naming the field, and 32 concurrent clients get their own rows."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from serve_helpers import running

import mmembed

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VIDEO = ASSETS / "videos" / "motorcycle_zoom.mp4"
TABLE = [{"planet": "Mars", "moons": 2, "ringed": False}, {"planet": "Saturn", "moons": 146}]
LIMITS = {
    "max_items": 40,
    "max_text_chars": 5000,
    "max_body_bytes": 4 * 2**20,
    "max_image_pixels": 600_000,
    "max_video_bytes": 512 * 1024,
    "max_video_frames": 16,
    "max_table_cells": 100,
    "max_document_parts": 6,
}


def data_url(data: bytes, media: str) -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def image_part(data: bytes, media: str = "image/png") -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(data, media)}}


def png(picture: PILImage.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, fmt)
    return buffer.getvalue()


def post(base: str, body: object, headers: dict | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}/v1/embeddings", data, {"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, None, headers or {})) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def served(body: dict) -> np.ndarray:
    return np.array([row["embedding"] for row in body["data"]], dtype=np.float32)


@pytest.fixture(scope="module")
def allowed(tmp_path_factory) -> Path:
    """The --allow-files folder: a photo, and a symlink leading out of the folder."""
    folder = tmp_path_factory.mktemp("allowed")
    (folder / "cat.jpg").write_bytes((ASSETS / "images/cat.jpg").read_bytes())
    (folder / "escape.jpg").symlink_to(ASSETS / "images/coffee.jpg")
    return folder


@pytest.fixture(scope="module")
def embed_app(mini, allowed):
    from mmembed.serve import ServeCfg, build_app

    return build_app(ServeCfg(allow_files=allowed, **LIMITS), embedder=mini)


@pytest.fixture(scope="module")
def server(embed_app):
    with running(embed_app) as url:
        yield url


@pytest.fixture(scope="module")
def odd_modes(tmp_path_factory) -> dict[str, Path]:
    """The astronaut photo saved as 16-bit, 32-bit integer, float, grey+alpha and palette."""
    from skimage import data as samples

    folder = tmp_path_factory.mktemp("modes")
    rgb = PILImage.fromarray(samples.astronaut()).resize((192, 192))
    grey = np.asarray(rgb.convert("L"), dtype=np.float64)
    alpha = np.tile(np.linspace(0, 255, 192, dtype=np.uint8), (192, 1))
    pictures = {
        "I;16": (PILImage.fromarray((grey * 257).astype(np.uint16)), "PNG"),
        "I": (PILImage.fromarray((grey * 1000).astype(np.int32)), "TIFF"),
        "F": (PILImage.fromarray((grey / 255).astype(np.float32)), "TIFF"),
        "LA": (PILImage.merge("LA", [rgb.convert("L"), PILImage.fromarray(alpha)]), "PNG"),
        "P": (rgb.convert("P", palette=PILImage.Palette.ADAPTIVE), "PNG"),
        "L": (rgb.convert("L"), "PNG"),
    }
    paths = {}
    for mode, (picture, fmt) in pictures.items():
        paths[mode] = folder / f"{mode.replace(';', '')}.{fmt.lower()}"
        picture.save(paths[mode], fmt)
        assert PILImage.open(paths[mode]).mode.startswith(mode[0]), mode
    return paths


def test_every_modality_and_image_mode_equals_encode(server, mini, odd_modes):
    photo = (ASSETS / "images/cat.jpg").read_bytes()
    video = VIDEO.read_bytes()
    document = [
        {"type": "text", "text": "Apollo 11 landed in the Sea of Tranquility"},
        image_part((ASSETS / "documents/astronaut.jpg").read_bytes(), "image/jpeg"),
        {"type": "table", "table": TABLE},
    ]
    inputs = [
        "a close-up of a tabby cat",
        {"type": "text", "text": "a rocket on the launch pad at dusk"},
        image_part(photo, "image/jpeg"),
        {"type": "video_url", "video_url": {"url": data_url(video, "video/mp4")}, "num_frames": 4},
        {"type": "table", "table": TABLE},
        document,
    ]
    media = {".png": "image/png", ".tiff": "image/tiff"}
    inputs += [image_part(path.read_bytes(), media[path.suffix]) for path in odd_modes.values()]
    expected_items = [
        mmembed.Text("a close-up of a tabby cat"),
        mmembed.Text("a rocket on the launch pad at dusk"),
        mmembed.Image(ASSETS / "images/cat.jpg"),
        mmembed.Video(str(VIDEO), num_frames=4),
        mmembed.Table(TABLE),
        mmembed.Document(
            [
                "Apollo 11 landed in the Sea of Tranquility",
                mmembed.Image(ASSETS / "documents/astronaut.jpg"),
                mmembed.Table(TABLE),
            ]
        ),
        *[mmembed.Image(path) for path in odd_modes.values()],
    ]
    status, body = post(server, {"input": inputs, "model": "mmembed-mini"})
    assert status == 200, body
    assert body["object"] == "list" and body["model"] == "mmembed-mini"
    assert [row["index"] for row in body["data"]] == list(range(len(inputs)))
    assert {row["object"] for row in body["data"]} == {"embedding"}
    expected = np.asarray(mini.encode(expected_items))
    assert np.abs(served(body) - expected).max() <= 1e-6
    # The 16-bit, I and F pictures show the astronaut (close to the 8-bit grey one), not white.
    vectors = dict(zip(odd_modes, served(body)[6:], strict=True))
    white = np.asarray(mini.encode(mmembed.Image(np.full((64, 64, 3), 255, np.uint8))))
    for mode in ("I;16", "I", "F"):
        assert vectors[mode] @ vectors["L"] > 0.99 and vectors[mode] @ white < 0.9, mode
    # Matryoshka dimensions and an instruction, as encode(dim=..., instruction=...) gives them.
    status, body = post(
        server, {"input": inputs[:6], "dimensions": 64, "instruction": "Find the photo:"}
    )
    assert status == 200, body
    expected = np.asarray(mini.encode(expected_items[:6], instruction="Find the photo:", dim=64))
    assert served(body).shape == (6, 64)
    assert np.abs(served(body) - expected).max() <= 1e-6
    # base64: little-endian float32, the same numbers
    status, encoded = post(
        server, {"input": inputs[:3], "dimensions": 64, "encoding_format": "base64"}
    )
    assert status == 200
    rows = [np.frombuffer(base64.b64decode(r["embedding"]), "<f4") for r in encoded["data"]]
    expected = np.asarray(mini.encode(expected_items[:3], dim=64))
    assert np.abs(np.stack(rows) - expected).max() <= 1e-6


def test_usage_counts_the_text_towers_tokens(server, mini):
    tokenizer = mini.towers["text"].tokenizer
    texts = ["a cat", "the quick brown fox jumps over the lazy dog"]
    status, body = post(server, {"input": texts})
    expected = sum(len(tokenizer(text)["input_ids"]) for text in texts)
    assert status == 200 and body["usage"] == {"prompt_tokens": expected, "total_tokens": expected}
    photo = image_part((ASSETS / "images/cat.jpg").read_bytes(), "image/jpeg")
    status, body = post(server, {"input": [photo]})
    assert status == 200 and body["usage"]["prompt_tokens"] == 0
    status, body = post(server, {"input": ["a cat", photo], "instruction": "Find:"})
    assert body["usage"]["prompt_tokens"] == len(tokenizer("Find: a cat")["input_ids"]) + len(
        tokenizer("Find:")["input_ids"]
    )


def test_openai_client_float_base64_and_content_parts(server, mini):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    texts = ["a tabby cat with green eyes", "an espresso on a red saucer", "a galaxy"]
    expected = np.asarray(mini.encode(texts))
    as_float = client.embeddings.create(model="mmembed-mini", input=texts, encoding_format="float")
    by_default = client.embeddings.create(model="mmembed-mini", input=texts)  # base64 on the wire
    for response in (as_float, by_default):
        got = np.array([row.embedding for row in response.data], dtype=np.float32)
        assert np.abs(got - expected).max() <= 1e-6
        assert response.usage.prompt_tokens > 0 and response.model == "mmembed-mini"
    one = client.embeddings.create(
        model="mmembed-mini", input=texts[0], dimensions=32, user="accepted-and-ignored"
    )
    assert len(one.data) == 1 and len(one.data[0].embedding) == 32
    photo = (ASSETS / "images/coffee.jpg").read_bytes()
    parts = [
        image_part(photo, "image/jpeg"),
        [{"type": "text", "text": "coffee"}, image_part(photo)],
    ]
    response = client.embeddings.create(
        model="mmembed-mini", input="ignored", extra_body={"input": parts}
    )
    got = np.array([row.embedding for row in response.data], dtype=np.float32)
    image = mmembed.Image(ASSETS / "images/coffee.jpg")
    expected = np.asarray(mini.encode([image, mmembed.Document(["coffee", image])]))
    assert np.abs(got - expected).max() <= 1e-6
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="mmembed-mini", input=["fine", "   "])
    assert caught.value.body["param"] == "input[1]" and "empty text" in caught.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert [model.id for model in client.models.list()] == ["mmembed-mini"]


def bad_requests(allowed: Path) -> list[tuple[object, int, str | None, str]]:
    """(body, status, param, words in the message) for each way a request can be wrong."""
    photo = (ASSETS / "images/cat.jpg").read_bytes()
    big = png(PILImage.new("RGB", (1000, 700)))
    text = image_part(b"these are words, not pixels")
    video = {"type": "video_url", "video_url": {"url": data_url(os.urandom(2000), "video/mp4")}}
    return [
        (b"{not json", 400, None, "not valid JSON"),
        ([1, 2], 400, None, "JSON object"),
        ({"model": "mmembed-mini"}, 400, "input", "missing"),
        ({"input": []}, 400, "input", "empty list"),
        ({"input": 7}, 400, "input", "string or a list"),
        ({"input": [101, 2023, 102]}, 400, "input", "token ids"),
        ({"input": [[101, 2023], [102]]}, 400, "input[0]", "token ids"),
        ({"input": ["ok", 3.5]}, 400, "input[1]", "got float"),
        ({"input": ["ok", []]}, 400, "input[1]", "empty list"),
        ({"input": "x", "temperature": 1}, 400, "temperature", "unrecognized"),
        ({"input": "x", "model": "gpt-4"}, 404, "model", "not served"),
        ({"input": "x", "dimensions": 0}, 400, "dimensions", "between 1 and"),
        ({"input": "x", "dimensions": 385}, 400, "dimensions", "384"),
        ({"input": "x", "dimensions": "64"}, 400, "dimensions", "integer"),
        ({"input": "x", "dimensions": True}, 400, "dimensions", "integer"),
        ({"input": "x", "encoding_format": "int8"}, 400, "encoding_format", "float"),
        ({"input": "x", "prompt_name": "passage"}, 400, "prompt_name", "query"),
        ({"input": "x", "prompt_name": "query", "instruction": "y"}, 400, "prompt_name", "not both"),
        ({"input": "x", "instruction": ["y"]}, 400, "instruction", "string"),
        ({"input": ["ok", ""]}, 400, "input[1]", "empty text"),
        ({"input": ["ok", "y" * 5001]}, 413, "input[1]", "5001 characters"),
        ({"input": ["ok"] * 41}, 413, "input", "above the limit of 40"),
        ({"input": ["ok", {"type": "audio", "audio": "x"}]}, 400, "input[1]", "unknown content"),
        ({"input": [{"text": "no type"}]}, 400, "input[0]", "unknown content"),
        ({"input": [{"type": "text", "text": 5}]}, 400, "input[0]", "string 'text'"),
        ({"input": [{"type": "image_url"}]}, 400, "input[0]", "needs"),
        ({"input": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]},
         400, "input[0]", "not valid base64"),
        ({"input": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]},
         400, "input[0]", "base64"),
        ({"input": [{"type": "image_url", "image_url": {"url": data_url(photo, "text/plain")}}]},
         400, "input[0]", "image/*"),
        ({"input": ["ok", text]}, 400, "input[1]", "not an image"),
        ({"input": [image_part(big)]}, 413, "input[0]", "1000x700 pixels"),
        ({"input": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
         400, "input[0]", "not fetched"),
        ({"input": [{"type": "image_url", "image_url": {"url": f"file://{allowed}/nope.jpg"}}]},
         400, "input[0]", "no such file"),
        ({"input": [{"type": "image_url", "image_url": {"url": f"file://{allowed}/escape.jpg"}}]},
         400, "input[0]", "no such file"),
        ({"input": [{"type": "image_url", "image_url": {"url": "file:///etc/hostname"}}]},
         400, "input[0]", "no such file"),
        ({"input": ["ok", video]}, 400, "input[1]", "input[1]"),
        ({"input": [{**video, "num_frames": 17}]}, 413, "input[0]", "num_frames"),
        ({"input": [{**video, "num_frames": 0}]}, 400, "input[0]", "num_frames"),
        ({"input": [{"type": "video_url", "video_url": {"url": data_url(b"v" * 600_000, "video/mp4")}}]},
         413, "input[0]", "over"),
        ({"input": [{"type": "table", "table": []}]}, 400, "input[0]", "non-empty list"),
        ({"input": [{"type": "table", "table": [{"a": [1]}]}]}, 400, "input[0]", "scalars"),
        ({"input": [{"type": "table", "table": [{"a": 1}] * 101}]}, 413, "input[0]", "cells"),
        ({"input": [["ok", video]]}, 400, "input[0][1]", "document holds"),
        ({"input": [["a"] * 7]}, 413, "input[0]", "parts"),
        ({"input": [["ok", {"type": "text"}]]}, 400, "input[0][1]", "string 'text'"),
    ]  # fmt: skip


def test_bad_requests_get_openai_errors_naming_the_item(server, allowed, mini):
    for body, status, param, words in bad_requests(allowed):
        got, answer = post(server, body)
        error = answer.get("error")
        assert got == status and isinstance(error, dict), (body, got, answer)
        assert set(error) == {"message", "type", "param", "code"}, answer
        assert error["type"] == "invalid_request_error" and error["param"] == param, (body, error)
        assert words in error["message"], (body, error)
        assert "/tmp" not in error["message"] and "mmembed-serve-" not in error["message"]
    # a body over max_body_bytes, declared and chunked
    got, answer = post(server, b'{"input": "' + b"x" * (4 * 2**20) + b'"}')
    assert got == 413 and "body" in answer["error"]["message"]
    status, body = post(server, {"input": [{"type": "image_url", "image_url": {
        "url": f"file://{allowed}/cat.jpg"}}]})  # fmt: skip
    expected = np.asarray(mini.encode(mmembed.Image(allowed / "cat.jpg")))
    assert status == 200 and np.abs(served(body)[0] - expected).max() <= 1e-6


def test_32_concurrent_clients_with_bad_ones_among_them(server, embed_app, mini):
    """32 client threads x 5 requests (texts, photos, documents, some with dimensions or an
    instruction, every fifth one bad): each good answer equals encode(), each bad one is a 400
    for its own item."""
    words = "cat dog rocket coffee flower camera palace planet moon street boat tree".split()
    photos = {name: (ASSETS / "images" / name).read_bytes() for name in ("cat.jpg", "rocket.jpg")}
    rng = random.Random(0)
    jobs = []
    for n in range(160):
        text = " ".join(rng.sample(words, rng.randint(1, 6)))
        photo = rng.choice(sorted(photos))
        options = rng.choice([{}, {"dimensions": 96}, {"instruction": "Find it:"}])
        inputs = [text, image_part(photos[photo], "image/jpeg")] if n % 3 == 0 else [text]
        typed = [mmembed.Text(text), mmembed.Image(ASSETS / "images" / photo)][: len(inputs)]
        bad = n % 5 == 4
        if bad:
            inputs.append(image_part(b"not an image"))
        jobs.append(({"input": inputs, **options}, typed, options, bad))

    def check(job) -> bool:
        body, typed, options, bad = job
        status, answer = post(server, body)
        if bad:
            return status == 400 and answer["error"]["param"] == f"input[{len(typed)}]"
        expected = mini.encode(
            typed, instruction=options.get("instruction"), dim=options.get("dimensions")
        )
        return status == 200 and np.abs(served(answer) - np.asarray(expected)).max() <= 1e-6

    sizes = embed_app.state.embeddings.batcher.batch_sizes
    before = len(sizes)
    with ThreadPoolExecutor(32) as pool:
        outcomes = list(pool.map(check, jobs))
    assert sum(outcomes) == len(jobs)
    assert max(list(sizes)[before:]) > 1  # requests did share encode calls


def test_models_health_and_no_index(server):
    status, body = get(f"{server}/v1/models")
    assert status == 200 and body["object"] == "list"
    (card,) = body["data"]
    assert card["id"] == "mmembed-mini" and card["object"] == "model"
    assert card["owned_by"] == "mmembed" and card["created"] == 0 and card["dimensions"] == 384
    assert {"text", "image", "video", "table", "document"} <= set(card["modalities"])
    assert get(f"{server}/health") == (200, {"status": "ok"})
    status, body = get(f"{server}/api/search?q=cat")
    assert status == 404 and "no index" in body["error"]
    status, body = get(f"{server}/")
    assert status == 404 and "no index" in body["error"]
    status, body = get(f"{server}/api/health")
    assert status == 200 and body["index"] is None and body["model"] == "mmembed-mini"
    status, body = get(f"{server}/v1/nothing")
    assert status == 404 and body["error"]["type"] == "invalid_request_error"


def raw_exchange(base: str, request: bytes) -> tuple[int, dict]:
    """Send ``request`` on a plain socket; the status and JSON body of the answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


def test_oversized_url_and_header_get_json(server):
    query = "q=" + "a" * 2**20
    status, body = raw_exchange(
        server, f"GET /api/search?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert status == 414 and "URL" in body["error"]
    header = "X-Big: " + "b" * 2**20
    status, body = raw_exchange(
        server,
        f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n{header}\r\nContent-Length: 2\r\n"
        "Connection: close\r\n\r\n{}".encode(),
    )
    assert status == 431 and "headers" in body["error"]["message"]
    chunk = b'{"input": "' + b"x" * 2**20
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    status, body = raw_exchange(
        server,
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + chunked,
    )
    assert status == 413 and "body" in body["error"]["message"]
    assert post(server, {"input": "still serving"})[0] == 200


def test_api_key_guards_every_route_but_health(mini):
    openai = pytest.importorskip("openai")
    from mmembed.serve import ServeCfg, build_app

    app = build_app(ServeCfg(api_key="s3cret"), embedder=mini)
    with running(app) as base:
        assert get(f"{base}/health") == (200, {"status": "ok"})
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, body = post(base, {"input": "x"}, headers)
            assert status == 401 and body["error"]["code"] == "invalid_api_key", headers
            status, body = get(f"{base}/api/health", headers)
            assert status == 401 and isinstance(body["error"], str)
        status, body = post(base, {"input": "x"}, {"Authorization": "Bearer s3cret"})
        assert status == 200 and len(body["data"]) == 1
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="s3cret", max_retries=0)
        assert len(client.embeddings.create(model="mmembed-mini", input="x").data) == 1
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{base}/v1", api_key="nope", max_retries=0).models.list()
