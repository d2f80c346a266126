"""``mmembed serve``: a real uvicorn server on 127.0.0.1, concurrent clients, bad requests,
the search page in headless Chromium, and SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from debian import needs
from serve_helpers import free_port, running

from mmembed.retrieval import Index
from mmembed.retrieval.fast_query import export_query_encoder

ASSETS = Path(__file__).resolve().parents[1] / "assets"
REPO = Path(__file__).resolve().parents[1]
CHROMEDRIVER = shutil.which("chromedriver")
# Each caption of assets/manifest.json finds its own photo first (tests/test_assets_retrieval.py).
CAPTIONS = {
    entry["caption"]: entry["path"]
    for entry in json.loads((ASSETS / "manifest.json").read_text())
    if entry["modality"] == "image"
}


@pytest.fixture(scope="module")
def index_dir(mini, mini_onnx_home, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serve") / "index"
    Index.build([ASSETS], mini, folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMEMBED_HOME", str(mini_onnx_home))
        export_query_encoder(mini, folder)
    return folder


@pytest.fixture(scope="module")
def server(mini, index_dir):
    """The app under uvicorn in a thread of this process (the model is the session's)."""
    from mmembed.serve import ServeCfg, build_app

    app = build_app(ServeCfg(max_upload_bytes=200_000), index_dir, embedder=mini)
    assert app.state.search.router.text is not None  # text queries go through ONNX Runtime
    with running(app) as url:
        yield url


def get(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post_file(url: str, name: str, data: bytes, content_type: str) -> tuple[int, object]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def search_url(base: str, **params: object) -> str:
    return f"{base}/api/search?{urllib.parse.urlencode(params)}"


def test_api_text_and_upload_give_the_cli_fields(server, index_dir, mini):
    status, hits = get(search_url(server, q="a close-up of a tabby cat with green eyes", k=3))
    assert status == 200 and len(hits) == 3
    assert set(hits[0]) == {
        "rank",
        "score",
        "id",
        "path",
        "modality",
        "page",  # a PDF page's number and the route that read it (None for other items)
        "route",
        "metadata",
        "snippet",
    }
    assert hits[0]["path"].endswith("images/cat.jpg") and hits[0]["rank"] == 1
    expected = Index.open(index_dir, mini).search("a close-up of a tabby cat with green eyes", 3)
    assert [hit["id"] for hit in hits] == [hit.id for hit in expected[0]]
    status, hits = get(search_url(server, q="a rocket", k=20, modality="video,table"))
    assert status == 200 and {hit["modality"] for hit in hits} == {"video", "table"}
    photo = (ASSETS / "images/coffee.jpg").read_bytes()
    status, hits = post_file(f"{server}/api/search?k=2", "coffee.jpg", photo, "image/jpeg")
    assert status == 200 and hits[0]["path"].endswith("images/coffee.jpg")
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_bad_requests_get_a_json_4xx_and_the_server_keeps_serving(server):
    cases = [
        (search_url(server), 400),  # no query
        (search_url(server, q="cat", k=0), 422),
        (search_url(server, q="cat", k=10**9), 422),
        (search_url(server, q="cat", k="many"), 422),
        (search_url(server, q="cat", modality="smell"), 422),
        (search_url(server, q="   "), 400),
    ]
    for url, status in cases:
        got, body = get(url)
        assert (got, set(body)) == (status, {"error"}), (url, body)
    status, body = post_file(f"{server}/api/search", "notes.txt", b"not a picture", "text/plain")
    assert status == 422 and "not an image or a video" in body["error"]
    status, body = post_file(f"{server}/api/search", "clip.mp4", os.urandom(5000), "video/mp4")
    assert status == 422 and "'clip.mp4'" in body["error"], body  # the upload's name...
    assert "/tmp" not in body["error"] and "mmembed-query-" not in body["error"]  # ...only
    status, body = post_file(f"{server}/api/search", "big.jpg", b"\xff" * 300_000, "image/jpeg")
    assert status == 413 and "limit" in body["error"]
    request = urllib.request.Request(f"{server}/api/search", b"{}", method="POST")
    try:
        urllib.request.urlopen(request, timeout=30)
        raise AssertionError("a POST without a file was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == 422 and "file" in json.loads(error.read())["error"]
    status, hits = get(search_url(server, q="a rocket on the launch pad at dusk", k=1))
    assert status == 200 and hits[0]["path"].endswith("images/rocket.jpg")


def test_concurrent_clients_get_their_own_results(server, index_dir, mini):
    """16 clients, 405 requests mixing text queries and image uploads: no error, no mix-up.

    Each caption's answer is first checked against the library's own ``Index.search`` (how well
    mmembed-mini finds the photos is tests/test_assets_retrieval.py's business)."""
    index = Index.open(index_dir, mini)
    expected = {}
    for caption in CAPTIONS:
        status, hits = get(search_url(server, q=caption, k=5))
        assert status == 200 and [hit["id"] for hit in hits] == index.search(caption, k=5).ids[0]
        expected[caption] = [hit["id"] for hit in hits]
    photos = {path: (ASSETS / path).read_bytes() for path in CAPTIONS.values()}
    jobs = [(caption, None) for caption in CAPTIONS] * 40 + [(None, p) for p in photos] * 5

    def ask(job):
        caption, photo = job
        if caption is not None:
            status, hits = get(search_url(server, q=caption, k=5))
            return status == 200 and [hit["id"] for hit in hits] == expected[caption]
        # k=2: the document holds a byte-identical copy of the astronaut photo (a tie at 1.0)
        status, hits = post_file(f"{server}/api/search?k=2", "q.jpg", photos[photo], "image/jpeg")
        return status == 200 and any(
            hit["path"].endswith(photo) for hit in hits if hit["score"] > 0.9999
        )

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(ask, jobs))
    assert len(outcomes) == len(CAPTIONS) * 40 + len(photos) * 5 and all(outcomes)


def test_search_page_says_what_the_server_does(server):
    with urllib.request.urlopen(f"{server}/?q=an+astronaut", timeout=60) as response:
        page = response.read().decode()
    body = page.split("<body>", 1)[1]
    assert body.count("<h1>") == 1 and "ONNX" not in page
    assert "17 items indexed with mmembed-mini: search them by text, or by an image" in page


@needs("chromium", "chromium-driver")
def test_search_page_in_headless_chromium(server, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    browser = webdriver.Chrome(options=options, service=service)
    try:
        browser.get(server + "/")
        box = browser.find_element(By.NAME, "q")
        box.send_keys("a cup of espresso coffee on a red saucer", Keys.ENTER)
        cards = browser.find_elements(By.CSS_SELECTOR, ".hit")
        assert len(cards) == 10
        first = cards[0]
        assert first.find_element(By.CSS_SELECTOR, ".path").text == "coffee.jpg"
        assert first.find_element(By.CSS_SELECTOR, ".modality").text.lower() == "image"
        assert first.find_element(By.CSS_SELECTOR, "img").get_property("naturalWidth") > 0
        assert browser.find_element(By.NAME, "q").get_attribute("value").startswith("a cup")
        upload = browser.find_element(By.NAME, "file")
        upload.send_keys(str(ASSETS / "images/rocket.jpg"))
        upload.submit()
        first = browser.find_elements(By.CSS_SELECTOR, ".hit")[0]
        assert first.find_element(By.CSS_SELECTOR, ".path").text == "rocket.jpg"
    finally:
        browser.quit()


def test_serve_command_stops_cleanly_on_sigterm(index_dir, mini_onnx_home):
    port = free_port()
    env = {**os.environ, "MMEMBED_HOME": str(mini_onnx_home), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "mmembed.cli", "serve", str(index_dir), "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        url = search_url(f"http://127.0.0.1:{port}", q="a cup of espresso coffee", k=1)
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, process.communicate()[1][-3000:]
            try:
                status, hits = get(url)
                break
            except OSError:
                assert time.monotonic() < deadline, "mmembed serve did not start"
                time.sleep(0.5)
        assert status == 200 and hits[0]["path"].endswith("coffee.jpg")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-3000:]
    assert "serving" in out and "Traceback" not in err and "stopped" in err
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_server_switches_to_a_new_index_generation_without_a_restart(
    mini, cli, mini_onnx_home, tmp_path, monkeypatch
):
    """Index two photos, serve, add a third and rerun ``mmembed index``: ``/api/health`` and
    the search results move to the new generation while the server runs."""
    from mmembed.serve import ServeCfg, build_app

    monkeypatch.setenv("MMEMBED_HOME", str(mini_onnx_home))
    photos, index = tmp_path / "photos", tmp_path / "index"
    photos.mkdir()
    for name in ("cat.jpg", "coffee.jpg"):
        shutil.copy(ASSETS / "images" / name, photos / name)
    assert cli("index", photos, "--out", index)[0] == 0
    app = build_app(ServeCfg(reload_interval_s=0.2), index, embedder=mini)
    rocket = "a rocket on the launch pad at dusk"
    with running(app) as base:
        status, health = get(f"{base}/api/health")
        first = health["generation"]
        assert status == 200 and health["items"] == 2 and first.startswith("gen-")
        status, hits = get(search_url(base, q=rocket, k=3))
        assert status == 200 and not any(hit["path"].endswith("rocket.jpg") for hit in hits)
        old = app.state.search.current()  # what a request in flight holds
        shutil.copy(ASSETS / "images/rocket.jpg", photos / "rocket.jpg")
        assert cli("index", photos, "--out", index)[0] == 0
        deadline = time.monotonic() + 30
        while get(f"{base}/api/health")[1]["generation"] == first:
            assert time.monotonic() < deadline, "the server kept the old generation"
            time.sleep(0.1)
        status, health = get(f"{base}/api/health")
        assert health["items"] == 3 and health["generation"] > first
        status, hits = get(search_url(base, q=rocket, k=3))
        assert status == 200 and hits[0]["path"].endswith("rocket.jpg")
        # A request that took the old generation finishes on it, though its folder is gone.
        assert not old.generation.folder.exists()
        hits = app.state.search.search_text(rocket, 3, None, old)
        assert len(hits) == 2 and not any(hit.path.endswith("rocket.jpg") for hit in hits)
