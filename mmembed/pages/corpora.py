"""Texts, tables and visually grounded perturbations for the ``pixel_text`` recipe.

Corpora ship offline: WordNet glosses and WordNet's example sentences from Debian's
``wordnet-base``; fortune-cookie quotations, jokes and sayings from Debian's ``fortunes``
(general-domain English in many registers, one to a few lines each, so pages get multi-line
paragraphs); or the first sentences of Python standard-library docstrings, which every
Python has (tests use these). The held-out split is by a hash of the text, so it does not move
when the corpus grows or is capped.

Perturbations follow Pixel Sentence Representation Learning (Xiao et al. 2024): typos (insert,
delete, substitute with a look-alike, swap neighbours) and word-order shuffles keep a page
readable to a person, so its meaning, and its embedding, should not move.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import random
import re
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..processors.table import table_to_markdown_chunks

WORDNET_DIR = "/usr/share/wordnet"
WORDNET_FILES = {"noun": "data.noun", "verb": "data.verb", "adj": "data.adj", "adv": "data.adv"}
FORTUNES_DIR = "/usr/share/games/fortunes"
# Fortune files of ordinary prose (quotes, jokes, sayings); ASCII art and Debian tips left out.
FORTUNE_FILES = (
    "computers", "cookie", "definitions", "education", "food", "fortunes", "goedel",
    "humorists", "kids", "law", "linuxcookie", "literature", "love", "magic", "medicine",
    "men-women", "miscellaneous", "news", "people", "pets", "platitudes", "politics",
    "riddles", "science", "songs-poems", "sports", "wisdom", "work",
)  # fmt: skip
# Standard-library modules whose docstrings give the offline test corpus.
STDLIB_MODULES = (
    "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "contextlib", "csv",
    "datetime", "decimal", "difflib", "email", "fractions", "functools", "glob", "gzip", "heapq",
    "html", "http.client", "inspect", "io", "ipaddress", "itertools", "json", "logging", "os",
    "pathlib", "pickle", "random", "re", "shutil", "socket", "sqlite3", "statistics", "string",
    "subprocess", "tarfile", "tempfile", "textwrap", "threading", "unittest",
    "urllib.parse", "uuid", "zipfile",
)  # fmt: skip
LOCALE_DIR = "/usr/share/locale"
# Message catalogs of Debian's required and important packages (coreutils, tar, dpkg, ...), in
# the Latin-script languages whose letters Latin-1 and Latin Extended-A hold: real accented
# sentences (é, ü, ß, ł, ő, ş, č, ...) on every Debian system, no download.
TRANSLATION_DOMAINS = (
    "coreutils", "tar", "dpkg", "apt", "bash", "diffutils", "findutils", "sed", "grep", "libc",
)  # fmt: skip
TRANSLATION_LANGUAGES = (
    "ca", "cs", "da", "de", "eo", "es", "et", "eu", "fi", "fr", "gl", "hr", "hu", "it", "lt",
    "lv", "nb", "nl", "pl", "pt", "pt_BR", "sk", "sl", "sv", "tr",
)  # fmt: skip
_MARKUP = set("%{}\\<>_&|$*=[]#@`^~")  # format directives, markup and command syntax
# Characters a reader confuses at a glance; substitutions prefer these to random letters.
LOOK_ALIKES = {
    "a": "o", "b": "h", "c": "e", "e": "c", "g": "q", "h": "n", "i": "l", "l": "i", "m": "n",
    "n": "m", "o": "a", "q": "g", "r": "n", "t": "f", "u": "v", "v": "u", "y": "v",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Gloss:
    """A dictionary entry: the word, its part of speech and its definition."""

    word: str
    pos: str
    text: str


# -- corpora -----------------------------------------------------------------------------------


def _wordnet_entries(root: str | Path, hint: str = "") -> Iterator[tuple[str, str, str]]:
    """(part of speech, headword, gloss with its quoted examples) of every synset, in file order.

    Raises:
        FileNotFoundError: wordnet-base is not installed, naming the package to install.
    """
    for pos, name in WORDNET_FILES.items():
        path = Path(root) / name
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: install Debian's wordnet-base (apt-get install wordnet-base)"
                + hint
            )
        with open(path, encoding="latin-1") as lines:
            for line in lines:
                if line.startswith("  ") or " | " not in line:  # licence header
                    continue
                fields, gloss = line.split(" | ", 1)
                yield pos, fields.split()[4].replace("_", " "), gloss


def read_wordnet(root: str | Path = WORDNET_DIR) -> list[Gloss]:
    """Every synset's definition (the gloss before its quoted examples), in file order."""
    return [
        Gloss(word, pos, gloss.strip().split('; "')[0].strip().rstrip(";").strip())
        for pos, word, gloss in _wordnet_entries(root, " or use task_options.corpus: python_docs")
    ]


def read_wordnet_examples(root: str | Path = WORDNET_DIR) -> list[Gloss]:
    """WordNet's quoted example sentences ("the children played in the garden"), in file order."""
    return [
        Gloss(word, f"{pos} example", quoted.strip())
        for pos, word, gloss in _wordnet_entries(root)
        for quoted in re.findall(r'"([^"]+)"', gloss)
    ]


def read_fortunes(
    root: str | Path = FORTUNES_DIR, files: Sequence[str] = FORTUNE_FILES
) -> list[Gloss]:
    """Fortunes of Debian's ``fortunes`` package; line breaks kept, runs of spaces collapsed.

    Entries that are mostly not letters (ASCII art, tables) are dropped.

    Raises:
        FileNotFoundError: the package is not installed, naming it.
    """
    entries = []
    for name in files:
        path = Path(root) / name
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: install Debian's fortunes (apt-get install fortunes)"
            )
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            lines = [" ".join(line.split()) for line in entry.strip("%\n").splitlines()]
            text = "\n".join(line for line in lines if line)
            prose = sum(c.isalpha() or c.isspace() for c in text)
            if text and prose >= 0.85 * len(text):
                entries.append(Gloss(name, "fortune", text))
    return entries


def read_translations(
    root: str | Path = LOCALE_DIR,
    domains: Sequence[str] = TRANSLATION_DOMAINS,
    languages: Sequence[str] = TRANSLATION_LANGUAGES,
) -> list[Gloss]:
    """Translated messages (``Gloss(domain, language, text)``) holding a non-ASCII letter,
    in a stable order; messages with format directives or markup, and one-word ones, are left
    out. Catalogs that are missing or unreadable are skipped.

    Raises:
        FileNotFoundError: no catalog of ``domains`` is installed (naming the packages).
    """
    import gettext

    entries, found = [], 0
    for language in languages:
        for domain in domains:
            path = Path(root) / language / "LC_MESSAGES" / f"{domain}.mo"
            try:
                with open(path, "rb") as stream:
                    catalog = gettext.GNUTranslations(stream)._catalog  # noqa: SLF001
            except (OSError, UnicodeDecodeError, ValueError):
                continue
            found += 1
            texts = {v for v in catalog.values() if isinstance(v, str)}
            entries += [Gloss(domain, language, text) for text in sorted(texts) if _prose(text)]
    if not found:
        raise FileNotFoundError(
            f"no message catalog of {', '.join(domains[:3])}... under {root}: Debian strips "
            "them from slim images; install coreutils' translations (apt-get install --reinstall "
            "coreutils with /usr/share/locale kept)"
        )
    return entries


def _prose(text: str) -> bool:
    return (
        len(text.split()) >= 3
        and "\n" not in text
        and not _MARKUP & set(text)
        and any(ord(c) > 127 and c.isalpha() for c in text)
    )


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces collapsed to single spaces."""
    return " ".join(text.split())


def read_python_docs(modules: Sequence[str] = STDLIB_MODULES) -> list[Gloss]:
    """First sentences of standard-library docstrings (public names), in a stable order."""
    glosses = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in sorted(vars(module)):
            value = getattr(module, name)
            if name.startswith("_") or not (inspect.isfunction(value) or inspect.isclass(value)):
                continue
            sentence = first_sentence(inspect.getdoc(value) or "")
            if sentence:
                glosses.append(Gloss(name, "python", sentence))
    return glosses


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, whitespace collapsed."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    match = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    return (match.group(1) if match else paragraph).strip()


def dedupe(glosses: Sequence[Gloss], min_chars: int, max_chars: int) -> list[Gloss]:
    """One entry per distinct text of a usable length, sorted by text (a stable order)."""
    unique: dict[str, Gloss] = {}
    for gloss in glosses:
        if min_chars <= len(gloss.text) <= max_chars:
            unique.setdefault(gloss.text, gloss)
    return [unique[text] for text in sorted(unique)]


def is_held_out(text: str, permille: int) -> bool:
    """Whether ``text`` is in the held-out split: a hash of the text, stable across runs."""
    digest = hashlib.sha1(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 1000 < permille


def split_held_out(glosses: Sequence[Gloss], permille: int) -> tuple[list[Gloss], list[Gloss]]:
    """(train, held-out) by :func:`is_held_out`, each in the input order."""
    train, held = [], []
    for gloss in glosses:
        (held if is_held_out(gloss.text, permille) else train).append(gloss)
    return train, held


def paragraphs(
    glosses: Sequence[Gloss], count: int, parts: tuple[int, int], seed: int
) -> list[str]:
    """``count`` paragraphs, each ``parts[0]..parts[1]`` random entries joined (seeded)."""
    rng = random.Random(seed)
    pool = list(glosses)
    return [" ".join(g.text for g in rng.sample(pool, rng.randint(*parts))) for _ in range(count)]


# -- tables ------------------------------------------------------------------------------------


def gloss_table(glosses: Sequence[Gloss]) -> pd.DataFrame:
    """A small dictionary table: one row per entry."""
    return pd.DataFrame(
        {
            "word": [g.word for g in glosses],
            "part of speech": [g.pos for g in glosses],
            "meaning": [g.text for g in glosses],
        }
    )


def gloss_tables(
    glosses: Sequence[Gloss], count: int, rows: tuple[int, int], seed: int
) -> Iterator[pd.DataFrame]:
    """``count`` tables of ``rows[0]..rows[1]`` random entries each (seeded)."""
    rng = random.Random(seed)
    for _ in range(count):
        yield gloss_table(rng.sample(list(glosses), rng.randint(*rows)))


def table_markdown(table: pd.DataFrame) -> str:
    """The Markdown a text tower reads for a table: its first chunk, as mmembed embeds tables."""
    return table_to_markdown_chunks(table, max_cell_chars=200, max_chars=2000)[0]


def markdown_table(markdown: str) -> pd.DataFrame | None:
    """Parse a table written by :func:`table_markdown` back; None when ``markdown`` is not one."""
    lines = markdown.split("\n")
    if len(lines) < 3 or not lines[0].startswith("| ") or not lines[1].startswith("| ---"):
        return None
    header, *rows = (_cells(line) for line in [lines[0], *lines[2:]])
    if any(len(row) != len(header) for row in rows):
        return None
    return pd.DataFrame(rows, columns=header)


def _cells(line: str) -> list[str]:
    inner = line.strip()[2:-2]  # drop the outer "| " and " |"
    return [cell.replace("\\|", "|") for cell in re.split(r"(?<!\\) \| ", inner)]


# -- perturbations -----------------------------------------------------------------------------


def add_typos(text: str, rng: random.Random, rate: float = 0.05) -> str:
    """Insert, delete, substitute (look-alikes first) or swap characters, about ``rate`` of them.

    At least one typo is made when the text has a letter.
    """
    chars = list(text)
    letters = [i for i, c in enumerate(chars) if c.isalpha()]
    if not letters:
        return text
    count = max(1, round(rate * len(letters)))
    for position in sorted(rng.sample(letters, min(count, len(letters))), reverse=True):
        char = chars[position]
        kind = rng.choice(("insert", "delete", "substitute", "swap"))
        if kind == "insert":
            chars.insert(position, rng.choice(string.ascii_lowercase))
        elif kind == "delete" and len(chars) > 1:
            del chars[position]
        elif kind == "swap" and position + 1 < len(chars) and chars[position + 1].isalpha():
            chars[position], chars[position + 1] = chars[position + 1], char
        else:
            lower = char.lower()
            new = LOOK_ALIKES.get(lower) or rng.choice(string.ascii_lowercase)
            chars[position] = new.upper() if char.isupper() else new
    return "".join(chars)


def shuffle_words(text: str, rng: random.Random, conditional: bool = True) -> str:
    """Shuffle word order: inside each clause keeping its first and last word (``conditional``),
    or over the whole text."""
    if not conditional:
        words = text.split()
        rng.shuffle(words)
        return " ".join(words)
    clauses = re.split(r"(?<=[,;:])\s+", text)
    shuffled = []
    for clause in clauses:
        words = clause.split()
        middle = words[1:-1]
        rng.shuffle(middle)
        shuffled.append(" ".join(words[:1] + middle + words[-1:]) if len(words) > 2 else clause)
    return " ".join(shuffled)


def perturb(text: str, rng: random.Random, typo_prob: float, shuffle_prob: float) -> str:
    """``text`` with typos (probability ``typo_prob``) and/or a word shuffle (``shuffle_prob``)."""
    if rng.random() < shuffle_prob:
        text = shuffle_words(text, rng, conditional=rng.random() < 0.5)
    if rng.random() < typo_prob:
        text = add_typos(text, rng)
    return text
