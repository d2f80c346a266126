"""Engine URIs: every form parsed in one place, every bad one refused in one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmembed.errors import UsageError
from mmembed.retrieval.remote.milvus import CollectionOptions
from mmembed.retrieval.remote.uri import MILVUS_PORT, parse


def test_forms(tmp_path, monkeypatch):
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path / "home"))
    assert parse(tmp_path / "index") is None and parse("my-index") is None  # folders
    lite = parse(f"milvus-lite://{tmp_path}/db.db?collection=photos")
    assert (lite.scheme, lite.collection, lite.path) == (
        "milvus-lite",
        "photos",
        tmp_path / "db.db",
    )
    assert lite.embedded and lite.ledger == tmp_path / "db.db.ledger" / "photos"
    assert parse(f"milvus-lite://{tmp_path}/db.db").collection == "mmembed"
    server = parse("milvus://search.internal:19531/photos")
    assert (server.host, server.port, server.collection) == ("search.internal", 19531, "photos")
    assert server.client_uri == "http://search.internal:19531" and not server.embedded
    assert (
        server.ledger
        == tmp_path / "home" / "stores" / "milvus" / "search.internal-19531" / "photos"
    )
    assert parse("milvus://db/photos").port == MILVUS_PORT
    own = parse(f"milvus://db/photos?ledger={tmp_path}/ledger")
    assert own.ledger == tmp_path / "ledger"


@pytest.mark.parametrize(
    ("uri", "cause"),
    [
        ("foo://x/y", "unknown scheme foo://"),
        ("qdrant-local:///tmp/q?collection=a", "Qdrant is not supported"),
        ("qdrant://localhost:6333/a", "brute force"),
        ("milvus://:19530/photos", "no host"),
        ("milvus://db:port/photos", "port is not a number"),
        ("milvus://db:19530/", "no collection"),
        ("milvus://db/bad-name", "letters, digits and _"),
        ("milvus-lite://host/db.db", "three slashes"),
        ("milvus-lite:///", "no database path"),
        ("milvus-lite:///tmp/db.db?colection=x", "unknown option colection"),
    ],
)
def test_bad_uris(uri, cause):
    with pytest.raises(UsageError) as error:
        parse(uri)
    message = str(error.value)
    assert message.startswith(uri) and cause in message and "\n" not in message


def test_collection_options():
    options = CollectionOptions.make("ivf-pq", {"nprobe": 8, "m": 24}, shards=2, replicas=3)
    assert options.index_type == "IVF_PQ" and options.search_params == {"nprobe": 8}
    assert options.build_params == {"nlist": 1024, "m": 24, "nbits": 8}
    assert (options.shards, options.replicas) == (2, 3)
    assert CollectionOptions.make().index_type == "HNSW"
    with pytest.raises(UsageError, match="unknown store index"):
        CollectionOptions.make("annoy")
    with pytest.raises(UsageError, match="--shards must be at least 1"):
        CollectionOptions.make(shards=0)


def test_cli_refuses_before_loading(cli, tmp_path):
    """Bad URIs and engine options on a folder fail in one line, before a model loads."""
    photos = Path(__file__).resolve().parent.parent / "assets" / "images"
    code, _, err = cli("index", photos, "--out", "foo://x/y")
    assert (
        code == 2
        and err.strip()
        == "mmembed index: foo://x/y: unknown scheme foo:// "
        "(use milvus-lite://, milvus:// or a folder)"
    )
    code, _, err = cli("index", photos, "--out", tmp_path / "folder", "--shards", "2")
    assert code == 2 and "--shards needs --out URI" in err
    code, _, err = cli("index", photos, "--out", "milvus://db/x", "--store-param", "ef")
    assert code == 2 and "write KEY=NUMBER" in err
    code, _, err = cli("search", "qdrant://h:1/c", "a cat")
    assert code == 2 and err.startswith("mmembed search: qdrant://h:1/c: Qdrant is not supported")
    assert cli.loads == []
