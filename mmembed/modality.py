"""The modalities mmembed embeds, as one enum so code loops over them instead of copying."""

from __future__ import annotations

from enum import Enum


class Modality(str, Enum):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    DOCUMENT = "document"
    TABLE = "table"
    PAGE = "page"


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
TABLE_EXTENSIONS = frozenset({".csv", ".tsv", ".parquet"})
