"""Text helpers with no weights: splitting long text into windows a text tower can read."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InputError


def is_blank(text: str) -> bool:
    """Whether ``text`` has no visible character (only whitespace, NUL or other controls)."""
    return not any(char.isprintable() and not char.isspace() for char in text)


def check_unicode(text: str, what: str = "text") -> str:
    """Refuse a str that cannot be encoded as UTF-8 (a lone surrogate, as ``os.fsdecode`` makes
    of a bad file name): tokenizers raise a TypeError on it, which would abort the whole call.
    Values that are not str pass (their own checks say what is wrong with them)."""
    if not isinstance(text, str):
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        sample = text[max(0, error.start - 20) : error.end + 20]
        raise InputError(
            f"{what} is not valid Unicode: {ascii(sample)} has an unpaired surrogate at "
            f"character {error.start}"
        ) from None
    return text


def check_text(text: str, what: str = "text") -> str:
    """Reject what no text tower can embed meaningfully. Plain strings, ``Text`` and document
    segments pass through here; table cells and instructions, which may be blank, through its
    ``check_unicode`` alone."""
    if not isinstance(text, str):
        raise InputError(f"{what} must be str, got {type(text).__name__}")
    check_unicode(text, what)
    if is_blank(text):
        raise InputError(f"empty {what}")
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


def windows_at_word_starts(
    text: str, offsets: list[tuple[int, int]], word_ids: list[int | None], window: int
) -> list[str]:
    """Cut ``text``, tokenized once, into pieces of at most ``window`` tokens.

    ``offsets`` and ``word_ids`` are a fast tokenizer's character span and word index per
    token. Each cut moves back to the start of the word it would split, so pieces are full
    to within one word; a word longer than the window is cut inside. A piece runs to the next
    piece's first character, so no character is dropped.
    """
    starts = [0]
    while starts[-1] + window < len(offsets):
        end = starts[-1] + window
        while (
            end > starts[-1] + 1
            and word_ids[end] is not None
            and word_ids[end] == word_ids[end - 1]
        ):
            end -= 1
        if end == starts[-1] + 1 and word_ids[end] == word_ids[end - 1]:
            end = starts[-1] + window
        starts.append(end)
    chars = [offsets[start][0] for start in starts]
    pieces = [text[a:b].strip() for a, b in zip(chars, chars[1:] + [len(text)], strict=True)]
    return [piece for piece in pieces if piece]


def join_instruction(instruction: str | None, text: str) -> str:
    """A text part with its instruction in front, as every text tower and export reads it."""
    return f"{instruction} {text}" if instruction else text
