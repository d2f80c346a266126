"""``mmembed search`` and ``mmembed serve`` route every query the same way (one
``retrieval.fast_query.QueryRouter``) and so find the same hits with the same scores."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from mmembed.cli.search import parse_query, search_hits
from mmembed.modality import Modality
from mmembed.retrieval import Index
from mmembed.retrieval.fast_query import (
    IMAGE_EXPORT,
    MODEL,
    TEXT_EXPORT,
    QueryRouter,
    export_query_encoder,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
FILES = ["images/cat.jpg", "images/rocket.jpg", "images/coffee.jpg", "videos/motorcycle_zoom.mp4"]


@pytest.fixture(scope="module")
def index_dir(mini, mini_onnx_home, tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("router-files")
    for name in FILES:
        shutil.copy(ASSETS / name, source / Path(name).name)
    folder = tmp_path_factory.mktemp("router") / "index"
    Index.build([source], mini, folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMEMBED_HOME", str(mini_onnx_home))
        export_query_encoder(mini, folder)
    return folder


@pytest.fixture()
def routes(monkeypatch) -> list[str]:
    """Every route ``QueryRouter`` takes, in order."""
    taken: list[str] = []
    route = QueryRouter.route

    def spy(self, modality, instruction=None):
        taken.append(route(self, modality, instruction))
        return taken[-1]

    monkeypatch.setattr(QueryRouter, "route", spy)
    return taken


def _cli_args(index_dir: Path, **query) -> argparse.Namespace:
    flags = {"text": None, "image": None, "video": None, "table": None, "document": None}
    return argparse.Namespace(
        index=index_dir, model=None, device=None, instruction=None, top_k=3, **{**flags, **query}
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"text": "a cat"}, TEXT_EXPORT),
        ({"image": ASSETS / "images" / "rocket.jpg"}, IMAGE_EXPORT),
        ({"video": ASSETS / "videos" / "motorcycle_zoom.mp4"}, MODEL),
    ],
)
def test_search_and_serve_route_a_query_alike(mini, index_dir, routes, query, expected):
    from mmembed.serve import ServeCfg
    from mmembed.serve.embedding import EmbeddingService
    from mmembed.serve.service import SearchService, Upload

    args = _cli_args(index_dir, **query)
    _, parsed, _ = parse_query(args)
    searched = search_hits(Index.open(index_dir, mini), args, parsed, None)
    embeddings = EmbeddingService(mini, ServeCfg())
    service = SearchService(index_dir, embeddings, reload_interval_s=0)
    try:
        del routes[:]  # the service's description and start-up are not queries
        if "text" in query:
            served = service.search_text(query["text"], 3)
        else:
            path = next(iter(query.values()))
            upload = Upload(path.read_bytes(), path.name, "")
            served = service.search_upload(upload, 3)
    finally:
        service.close()
        embeddings.close()
    assert routes == [expected]
    assert [hit.id for hit in served] == [hit.id for hit in searched]
    assert [hit.score for hit in served] == pytest.approx([hit.score for hit in searched], abs=1e-5)


def test_an_instruction_sends_image_queries_to_the_model(mini, index_dir):
    router = QueryRouter(index_dir, mini.name)
    assert router.route(Modality.TEXT) == router.route(Modality.TEXT, "Find") == TEXT_EXPORT
    assert router.route(Modality.IMAGE) == IMAGE_EXPORT
    assert router.route(Modality.IMAGE, "Find a photo") == MODEL  # the head joins instructions
    assert router.route(Modality.TABLE) == MODEL
    assert QueryRouter(index_dir, "another-model").route(Modality.IMAGE) == MODEL
    assert QueryRouter(index_dir, mini.name, use_onnx=False).route(Modality.TEXT) == MODEL
