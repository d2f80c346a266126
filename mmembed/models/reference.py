"""How a model is named where it is recorded (an index, a query export), without importing torch.

``mmembed.load`` takes a zoo name, an ``open_clip:`` name or a folder. A folder given as a
relative path (``runs/tiny_clip/final``) means something only from the directory it was typed
in, so what an index records is the folder's absolute, resolved path: the index then works
from any directory. ``check_model`` refuses a name that is none of these in one line, before
anything heavy loads.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from . import zoo

OPEN_CLIP_PREFIX = "open_clip:"


def is_model_name(name: str) -> bool:
    """Whether ``name`` is a zoo name or an ``open_clip:`` name (not a path)."""
    return zoo.get_pretrained(name) is not None or name.startswith(OPEN_CLIP_PREFIX)


def model_reference(name: str | os.PathLike) -> str:
    """``name`` as an index records it: names as given, a folder as its absolute path.

    The order is ``mmembed.load``'s: a zoo name wins over a folder of the same name.
    """
    text = os.fspath(name)
    if is_model_name(text) or not Path(text).is_dir():
        return text
    return str(Path(text).resolve())


def check_model(name: str | os.PathLike, what: str = "--model") -> str:
    """``model_reference(name)``, or one line saying what ``name`` is not.

    Raises:
        UsageError: ``name`` is neither a known name nor an existing folder.
    """
    text = os.fspath(name)
    if text in zoo.UNSUPPORTED:
        raise UsageError(f"{what} {text!r}: {zoo.UNSUPPORTED[text]}")
    if is_model_name(text) or Path(text).is_dir():
        return model_reference(text)
    where = "a file, not a model folder" if Path(text).exists() else "no such folder"
    raise UsageError(
        f"{what} {text!r}: not a model name (`mmembed models` lists them), not "
        f"'open_clip:ARCH[/TAG]', and {where}"
    )


def same_model(given: str | os.PathLike, recorded: str) -> bool:
    """Whether ``given`` (e.g. ``--model``) names the model an index recorded as ``recorded``.

    An index written before references were absolute may hold a folder relative to where it
    was built (``runs/tiny_clip/final``); a folder whose resolved path ends with those parts
    is that model, so ``--model`` can point at it from anywhere.
    """
    if model_reference(given) == model_reference(recorded):
        return True
    relative = Path(recorded)
    if relative.is_absolute() or is_model_name(recorded) or not Path(os.fspath(given)).is_dir():
        return False
    resolved = Path(os.fspath(given)).resolve().parts
    return resolved[-len(relative.parts) :] == relative.parts
