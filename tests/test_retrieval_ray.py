"""``engine="ray"``: a Ray Data pipeline on a local 2-CPU Ray instance gives the same index."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest

import mmembed
from mmembed.retrieval import Index

ray = pytest.importorskip("ray")

ASSETS = Path(__file__).resolve().parents[1] / "assets"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        num_gpus=1,  # declared only (no GPU here): CUDA models must ask Ray for one per actor
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    yield
    ray.shutdown()


def test_ray_pipeline_vectors_equal_single_process(local_ray, tmp_path, mini):
    assets = tmp_path / "assets"
    shutil.copytree(ASSETS, assets, ignore=shutil.ignore_patterns("models"))  # weights, not items
    (assets / "broken.jpg").write_bytes(b"not a jpeg")
    factory = functools.partial(mmembed.load, "mmembed-mini")
    distributed = Index.build(
        [assets], mini, tmp_path / "ray", engine="ray", embedder_factory=factory, batch_size=4
    )
    local = Index.build([assets], mini, tmp_path / "local")
    assert len(distributed) == len(local) > 0
    assert [row["path"] for row in distributed.skipped()] == [str(assets / "broken.jpg")]
    ray_rows = {row["id"]: row for row in distributed.generation.all_rows()}
    local_rows = {row["id"]: row for row in local.generation.all_rows()}
    assert ray_rows.keys() == local_rows.keys()
    for key, row in ray_rows.items():
        np.testing.assert_allclose(
            distributed.generation.vectors[row["pos"]],
            local.generation.vectors[local_rows[key]["pos"]],
            atol=1e-5,
        )
        assert row["snippet"] == local_rows[key]["snippet"]
    assert not (tmp_path / "ray" / "ray-shards").exists()
    # The pipeline also serves incremental runs: only the new file is embedded.
    (assets / "extra.md").write_text("A note about rockets.")
    report = Index.build([assets], mini, tmp_path / "ray", engine="ray", embedder_factory=factory)
    assert (report.last_update.added, report.last_update.embedded) == (1, 1)


def _load_on_granted_gpu(log: str):
    """Embedding-actor factory: records the GPUs Ray granted the actor, loads mini on CPU."""
    Path(log).write_text(",".join(str(gpu) for gpu in ray.get_gpu_ids()))
    return mmembed.load("mmembed-mini")


def test_ray_actors_ask_for_a_gpu_when_the_model_is_on_cuda(local_ray, tmp_path, mini):
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the factory, by value
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(ASSETS / "images" / "cat.jpg", folder)
    log = tmp_path / "granted.txt"
    factory = functools.partial(_load_on_granted_gpu, str(log))
    index = Index.build(
        [folder], mini, tmp_path / "ray", engine="ray", embedder_factory=factory, devices=["cuda:0"]
    )
    assert len(index) == 1
    assert log.read_text() == "0"  # Ray reserved the (declared) GPU for the actor
