"""Text helpers with no weights: splitting long text into windows a text tower can read."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InputError


def is_blank(text: str) -> bool:
    """Whether ``text`` has no visible character (only whitespace, NUL or other controls)."""
    return not any(char.isprintable() and not char.isspace() for char in text)


def check_text(text: str) -> str:
    """Reject what no text tower can embed meaningfully."""
    if not isinstance(text, str):
        raise InputError(f"text must be str, got {type(text).__name__}")
    if is_blank(text):
        raise InputError("empty text")
    return text


def split_to_window(
    text: str, count_tokens: Callable[[list[str]], list[int]], max_tokens: int
) -> list[str]:
    """Pack whole words greedily into chunks of at most ``max_tokens`` tokens.

    Words are counted one by one (``count_tokens`` takes a list and returns one count each),
    which can overcount slightly against tokenizing the whole chunk, never undercount for
    the word-piece and BPE tokenizers used by mmembed's towers. A single word longer than
    the window becomes its own chunk and is truncated by the tower.
    """
    words = text.split()
    counts = count_tokens(words) if words else []
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for word, count in zip(words, counts, strict=True):
        if current and used + count > max_tokens:
            chunks.append(" ".join(current))
            current, used = [], 0
        current.append(word)
        used += count
    if current:
        chunks.append(" ".join(current))
    return chunks
