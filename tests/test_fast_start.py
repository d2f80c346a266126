"""Nothing repeated, nothing heavy at start: lazy imports, the ConSE class-embedding cache,
memory-mapped flat search, a no-op ``mmembed index`` without a model, and output a person
can trust (counts, plurals, empty folders and indexes)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from mmembed.encoders import conse
from mmembed.models import lazy, registry
from mmembed.retrieval import store, vectors

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
HEAVY = ["torch", "transformers", "timm", "open_clip", "faiss", "pandas", "ray", "decord"]


def _fresh_modules(code: str) -> list[str]:
    """Heavy modules imported by ``code`` in a fresh interpreter."""
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()


def test_import_and_cli_parser_pull_in_no_heavy_library():
    code = "import mmembed, mmembed.retrieval.vectors\nfrom mmembed.cli import build_parser\n"
    assert _fresh_modules(code + "build_parser().parse_args(['search', 'x', 'q'])") == []


def test_a_bad_path_fails_before_any_model_loads(tmp_path):
    code = (
        "from mmembed.cli import main\n"
        f"assert main(['search', {str(tmp_path / 'nowhere')!r}, 'a cat']) == 2\n"
        f"assert main(['search', {str(tmp_path)!r}, '--image', 'missing.jpg']) == 2\n"
        f"assert main(['serve', {str(tmp_path / 'nowhere')!r}]) == 2\n"
    )
    assert _fresh_modules(code) == []


def test_loading_mmembed_mini_does_not_import_open_clip(mini):
    assert "open_clip" not in _fresh_modules("import mmembed\nmmembed.load('mmembed-mini')")


def test_class_embeddings_are_cached_and_keyed(mini, tmp_path, monkeypatch):
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path))
    text = mini.towers["text"]
    prompts = conse.imagenet_class_prompts("a photo of a {}.")[:24]
    first = conse.cached_class_embeddings(text, prompts)
    path = conse.class_embeddings_cache(text, prompts)
    assert path.is_file() and path.parent == tmp_path / "conse"
    # The mini tower's (cached) class embeddings equal a fresh computation.
    fresh = torch.nn.functional.normalize(conse.embed_prompts(text, prompts), dim=-1)
    shipped = mini.towers["image"].class_embeddings[:24]
    assert (shipped - fresh).abs().max() <= 1e-5
    assert (first - conse.embed_prompts(text, prompts)).abs().max() == 0

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(conse, "embed_prompts", refuse)
    assert torch.equal(conse.cached_class_embeddings(text, prompts), first)
    # Another prompt, class list or text tower is another key.
    assert conse.class_embeddings_cache(text, [p.upper() for p in prompts]) != path
    assert conse.class_embeddings_cache(text, prompts[:-1]) != path
    changed = copy.deepcopy(text)
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    assert conse.class_embeddings_cache(changed, prompts) != path
    # A corrupt cache file is recomputed, not trusted.
    monkeypatch.undo()
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path))
    path.write_bytes(b"garbage")
    assert torch.equal(conse.cached_class_embeddings(text, prompts), first)


def test_mapped_flat_search_equals_faiss_and_reads_the_memory_map(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((5000, 48)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    np.save(tmp_path / "vectors.npy", data)
    mapped = np.load(tmp_path / "vectors.npy", mmap_mode="r")
    searcher = vectors.load(vectors.VectorSpec("flat"), tmp_path, mapped)
    assert isinstance(searcher, vectors.MappedFlatSearcher) and searcher.vectors is mapped
    searcher.block = 777  # several blocks
    queries = data[[3, 4000]] + 0.01
    scores, positions = searcher.search(queries, 10)
    expected_scores, expected = vectors.flat_searcher(data).search(queries, 10)
    np.testing.assert_array_equal(positions, expected)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    scores, positions = vectors.MappedFlatSearcher(data[:3]).search(queries, 5)
    assert (positions[:, 3:] == -1).all() and np.isinf(scores[:, 3:]).all()


def test_index_output_and_a_no_op_rerun_without_the_model(
    cli, tmp_path, mini_onnx_home, monkeypatch
):
    monkeypatch.setenv("MMEMBED_HOME", str(mini_onnx_home))
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes((ASSETS / "images/cat.jpg").read_bytes())
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (photos / "notes.xyz").write_text("unsupported")
    index = tmp_path / "index"
    code, out, err = cli("index", photos, "--out", index)
    assert code == 0, err
    # One item, and the counts agree: 1 added = 1 embedded; the broken photo failed.
    assert out.startswith(f"1 item in {index} (1 added,")
    assert "embedded 1, 1 failed," in out and "skipped 2 items" in out
    assert (index / "query_encoder.json").is_file() and cli.loads == ["mmembed-mini"]
    code, out, err = cli("index", photos, "--out", index)
    assert code == 0 and "1 unchanged; embedded 0," in out
    assert cli.loads == ["mmembed-mini"]  # the no-op re-run loaded no model
    generation = json.loads((index / store.CURRENT).read_text())["generation"]
    (photos / "cat.jpg").unlink()  # only a removal: a new generation, still no model
    code, out, err = cli("index", photos, "--out", index)
    assert code == 0 and out.startswith("0 items in") and "1 removed" in out
    assert "the index is empty: every file was skipped" in err
    assert json.loads((index / store.CURRENT).read_text())["generation"] != generation
    assert cli.loads == ["mmembed-mini"]


def test_empty_folder_warns_and_empty_index_says_so(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    code, out, err = cli("index", tmp_path / "empty", "--out", tmp_path / "index")
    assert code == 0 and "the index is empty: no files were found" in err
    code, out, err = cli("search", tmp_path / "index", "a cat", "--json")
    assert code == 0 and json.loads(out) == [] and "is empty: nothing to search" in err
    code, out, err = cli("search", tmp_path / "index", "a cat", "-k", "0")
    assert code == 2 and "--top-k must be at least 1" in err


def test_lazy_embedder_answers_from_the_zoo_until_it_must_load(mini, monkeypatch):
    loads = []
    monkeypatch.setattr(registry, "load", lambda name, device=None: loads.append(name) or mini)
    proxy = lazy.LazyEmbedder("mmembed-mini")
    assert (proxy.name, proxy.dim, proxy.document_instruction) == ("mmembed-mini", 384, None)
    assert {m.value for m in proxy.modalities} >= {"text", "image", "video", "table", "document"}
    assert not proxy.loaded and loads == []
    assert proxy.encode("a cat").shape == (384,)
    assert proxy.loaded and loads == ["mmembed-mini"]
    assert proxy.modalities == mini.modalities


def test_a_missing_file_is_reported_once(cli, tmp_path, caplog):
    missing = tmp_path / "missing.jpg"
    code, out, err = cli("embed", missing, "a cat")
    assert code == 0 and "text" in out
    lines = [line for line in err.splitlines() if "missing.jpg" in line]
    assert len(lines) == 1 and "image file not found" in lines[0]
    assert not [record for record in caplog.records if "missing.jpg" in record.getMessage()]
