"""Fetching MMEB-eval from the Hugging Face hub into the layout the harness reads."""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

from ..hub.atomic import replace_folder
from .datasets import resolve_datasets
from .mmeb import DATA_INFO_FILE, mmembed_version
from .report import write_atomic

logger = logging.getLogger(__name__)

MMEB_EVAL_REPO = "TIGER-Lab/MMEB-eval"
"""The hub dataset holding MMEB's 36 evaluation sets (parquet per dataset, plus images.zip)."""

MMEB_EVAL_REVISION = "main"
"""Revision of MMEB_EVAL_REPO to fetch.

UNVERIFIED: this was written without network access, so no commit could be looked up. Replace
"main" with the commit SHA you validated (``huggingface_hub.HfApi().dataset_info(
"TIGER-Lab/MMEB-eval").sha``). Until then every download resolves "main" to a commit once, uses
that commit for all files, and records it in DATA_DIR/.mmembed-data.json and in the reports.
"""

IMAGES_ARCHIVE = "images.zip"


def download_mmeb(
    data_dir: Path | str,
    datasets: Sequence[str] | None = None,
    revision: str = MMEB_EVAL_REVISION,
    images: bool = True,
) -> str:
    """Download MMEB-eval datasets (and the images) into ``data_dir``.

    Needs network access and ``huggingface_hub``; files go to ``DATA_DIR/<dataset>/`` and the
    images to ``DATA_DIR/images/``. Already present files are not fetched again.

    Args:
        data_dir: target folder.
        datasets: dataset names as for ``evaluate_mmeb``; only MMEB (V1) datasets are on this
            repository, others are skipped with a warning.
        revision: branch, tag or commit of the hub repository.
        images: also fetch and unpack ``images.zip`` (several GB).

    Returns:
        The commit SHA that was downloaded.
    """
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    commit = (
        HfApi(library_name="mmembed", library_version=mmembed_version())
        .dataset_info(MMEB_EVAL_REPO, revision=revision)
        .sha
    )
    specs = resolve_datasets(list(datasets) if datasets else None)
    names = [spec.name for spec in specs if spec.benchmark.value == "mmeb"]
    for skipped in sorted({spec.name for spec in specs} - set(names)):
        logger.warning("%s is not part of %s; download it separately", skipped, MMEB_EVAL_REPO)
    logger.info("downloading %d datasets of %s@%s", len(names), MMEB_EVAL_REPO, commit)
    snapshot_download(
        MMEB_EVAL_REPO,
        repo_type="dataset",
        revision=commit,
        local_dir=root,
        allow_patterns=[f"{name}/*.parquet" for name in names],
        library_name="mmembed",
        library_version=mmembed_version(),
    )
    if images and not (root / "images").is_dir():
        archive = hf_hub_download(
            MMEB_EVAL_REPO,
            IMAGES_ARCHIVE,
            repo_type="dataset",
            revision=commit,
            library_name="mmembed",
            library_version=mmembed_version(),
        )
        unpack_images(Path(archive), root / "images")
    info = {"repo": MMEB_EVAL_REPO, "revision": commit}
    write_atomic(root / DATA_INFO_FILE, json.dumps(info, indent=2) + "\n")
    return commit


def unpack_images(archive: Path, target: Path) -> None:
    """Unpack an image archive into ``target``, atomically.

    If the archive holds a single top folder (the release's is believed to be ``eval_images/``;
    unverified here), its content becomes ``target``, so image paths in the rows resolve
    against ``target`` either way.
    """
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(staging)
    entries = [entry for entry in staging.iterdir() if not entry.name.startswith("__MACOSX")]
    source = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
    replace_folder(source, target)  # an older unpacked folder is replaced whole
    shutil.rmtree(staging, ignore_errors=True)
