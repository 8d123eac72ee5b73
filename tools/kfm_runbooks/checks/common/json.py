"""Strict JSON for records and evidence, and RFC 6901 JSON pointers.

`parse`: UTF-8 only, no duplicate keys, no NaN/Infinity. One parser for every checks
module; each maps the problem `kind` to its own finding code family (CAT_JSON_*,
SEC_JSON_*, JSON_*). Never raises on hostile input: too deep a nesting is a kind too.

`pointer` / `parent_of`: RFC 6901 pointers (``~0`` for ``~``, ``~1`` for ``/``). KFM's
findings name the whole document ``/`` (RFC 6901 spells it ""): kept, as findings persist.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .files import read_regular

KINDS = ("NOT_UTF8", "DUPLICATE_KEY", "NONFINITE_NUMBER", "INVALID", "TOO_DEEP")


class _DuplicateKey(ValueError):
    pass


class _NonFinite(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _NonFinite(text)
    return number


def _no_constant(text: str) -> Any:
    raise _NonFinite(text)


def parse(data: bytes) -> tuple[Any, str | None]:
    """(value, None), or (None, kind) with kind one of KINDS."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "NOT_UTF8"
    try:
        value = json.loads(
            text, object_pairs_hook=_unique, parse_float=_finite, parse_constant=_no_constant
        )
    except _DuplicateKey:
        return None, "DUPLICATE_KEY"
    except _NonFinite:
        return None, "NONFINITE_NUMBER"
    except RecursionError:
        return None, "TOO_DEEP"
    except ValueError:  # json.JSONDecodeError and the like
        return None, "INVALID"
    return value, None


def within_limits(value: Any, max_nodes: int = 50_000, max_depth: int = 64) -> bool:
    """Is a parsed document small and shallow enough to walk safely?"""
    pending: list[tuple[Any, int]] = [(value, 0)]
    count = 0
    while pending:
        item, depth = pending.pop()
        count += 1
        if count > max_nodes or depth > max_depth:
            return False
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
    return True


# --- RFC 6901 JSON pointers -------------------------------------------------------------


def pointer(parts: Iterable[Any]) -> str:
    """The pointer of a path of keys / indexes; ``/`` for the whole document (KFM's form)."""
    encoded = [str(part).replace("~", "~0").replace("/", "~1") for part in parts]
    return "/" + "/".join(encoded) if encoded else "/"


def tokens(text: str) -> list[str]:
    """The unescaped reference tokens of a pointer (``/a~1b/0`` -> ``["a/b", "0"]``)."""
    if not text.startswith("/"):
        raise ValueError(f"JSON pointer {text!r} does not start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")]


def parent_of(document: Any, text: str) -> tuple[Any, int | str]:
    """(container, key or index) the pointer's last token names inside `document`.

    KeyError / IndexError / ValueError / TypeError when the path does not exist.
    """
    parts = tokens(text)
    node = document
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    return node, int(last) if isinstance(node, list) else last


def set_at(document: Any, text: str, value: Any) -> None:
    """Replace what the pointer names with a deep copy of `value` (in place)."""
    node, key = parent_of(document, text)
    node[key] = copy.deepcopy(value)


# --- a JSON file a check judges --------------------------------------------------------


class JsonFileError(ValueError):
    """A file that holds no strict JSON document, with the problem kind (one of KINDS)."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path}: not strict JSON ({kind})")
        self.path = path
        self.kind = kind


def load_file(path: Path, limit: int) -> Any:
    """The strict JSON document in the regular file `path` (bounded read, links refused).

    Raises `FileProblemError` (an OSError: missing, link, not regular, too large) or
    `JsonFileError` (a ValueError): callers that catch (OSError, ValueError) fail closed.
    """
    value, kind = parse(read_regular(path, limit))
    if kind is not None:
        raise JsonFileError(path, kind)
    return value
