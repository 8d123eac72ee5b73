"""Strict JSON for catalog records: bounded reads, JSON pointers, placeholders.

Shared by the catalog-record runbooks (STAC/DCAT/PROV validation, license / sensitivity
labels, provenance). Read errors are returned as KFM's stable codes (the codes KFM's
validators use, unprefixed): FILE_NOT_FOUND, INPUT_SYMLINK_DENIED, JSON_DUPLICATE_KEY,
JSON_INVALID, JSON_NONFINITE_NUMBER, JSON_NOT_UTF8, JSON_COMPLEXITY_LIMIT,
ROOT_NOT_OBJECT, FILE_TOO_LARGE, FILE_READ_ERROR. Hostile input never raises.

`spec_hash` (KFM's content identity, RFC 8785) lives in `checks.common.jcs`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..common import json as strict_json
from ..common.files import FileProblem, read_bounded
from ..common.json import pointer
from ..common.paths import inside as inside  # re-exported: the catalog checks' import
from ..common.paths import rel as rel

MAX_RECORD_BYTES = 1_048_576
MAX_DEPTH = 64
MAX_NODES = 20_000
READ_ERROR_CODES = frozenset(
    {
        "FILE_NOT_FOUND",
        "FILE_READ_ERROR",
        "FILE_TOO_LARGE",
        "INPUT_SYMLINK_DENIED",
        "JSON_COMPLEXITY_LIMIT",
        "JSON_DUPLICATE_KEY",
        "JSON_INVALID",
        "JSON_NONFINITE_NUMBER",
        "JSON_NOT_UTF8",
        "ROOT_NOT_OBJECT",
        "PATH_ESCAPE",
    }
)
# The catalog code for each reason a record file is not read (prefixed CAT_ in health.py).
READ_PROBLEM_CODES = {
    FileProblem.MISSING: "FILE_NOT_FOUND",
    FileProblem.LINK: "INPUT_SYMLINK_DENIED",
    FileProblem.NOT_REGULAR: "FILE_NOT_FOUND",
    FileProblem.TOO_LARGE: "FILE_TOO_LARGE",
    FileProblem.UNREADABLE: "FILE_READ_ERROR",
}
# KFM's stub conventions over time: "placeholder", REPLACE_SHA256-style, <fill_me>.
PLACEHOLDER_RE = re.compile(r"(?i:placeholder)|\bREPLACE_[A-Z0-9_]+|(?i:<fill[_ -]?me>)")


def parse_json(data: bytes) -> tuple[Any, str | None]:
    """Parse bytes strictly: (value, None) or (None, code)."""
    value, kind = strict_json.parse(data)
    if kind == "TOO_DEEP" or (
        kind is None and not strict_json.within_limits(value, MAX_NODES, MAX_DEPTH)
    ):
        return None, "JSON_COMPLEXITY_LIMIT"
    if kind is not None:
        return None, f"JSON_{kind}"
    return value, None


def read_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Strict, bounded read of a JSON object file; symlinks are refused, never followed."""
    data, problem = read_bounded(path, MAX_RECORD_BYTES)
    if data is None:
        return None, READ_PROBLEM_CODES[problem or FileProblem.UNREADABLE]
    value, code = parse_json(data)
    if code is not None:
        return None, code
    if not isinstance(value, dict):
        return None, "ROOT_NOT_OBJECT"
    return value, None


RECORD_SUFFIXES = (".json", ".jsonld", ".geojson")


def json_files(
    entries: list[Path],
    base: Path,
    exclude: list[Path],
    skipped: list[dict[str, str]] | None = None,
) -> list[Path]:
    """Every record file (.json, .jsonld, .geojson) under `entries`, sorted, staying in `base`.

    Folders in `exclude` (quarantine, withheld) are skipped silently (they are write areas);
    every other file that is not a record is appended to `skipped` with the reason, so a
    scan says what it did not judge. Symlinked files are kept so that reading them reports
    INPUT_SYMLINK_DENIED, symlinked folders are not walked.
    """
    found: set[Path] = set()
    for entry in entries:
        if entry.is_file() or entry.is_symlink():
            candidates = [entry]
        elif entry.is_dir():
            candidates = [
                p
                for p in entry.rglob("*")
                if (p.is_file() or p.is_symlink()) and not _under_symlink(p, entry)
            ]
        else:
            continue
        for path in candidates:
            if any(_is_under(path, folder) for folder in exclude):
                continue
            if path.suffix.lower() not in RECORD_SUFFIXES and path != entry:
                if skipped is not None:
                    skipped.append({"file": rel(path, base), "reason": _skip_reason(path)})
                continue
            found.add(path)
    if skipped is not None:
        skipped.sort(key=lambda s: s["file"])
    return sorted(found, key=lambda p: rel(p, base))


def _skip_reason(path: Path) -> str:
    if path.name.endswith(".expected_error.txt"):
        return "expected-error matcher (read beside its record)"
    return f"not a .json/.jsonld/.geojson record ({path.suffix or 'no suffix'})"


def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _under_symlink(path: Path, top: Path) -> bool:
    current = path.parent
    while current != top and top in current.parents:
        if current.is_symlink():
            return True
        current = current.parent
    return False


def collection_license(
    path: Path, record: dict[str, Any], boundary: Path, extra: tuple[Path, ...] = ()
) -> str | None:
    """The licence an item inherits from its collection (STAC keeps licences on the
    collection where it can): the `collection` / `parent` link's Collection, or one of
    `extra`, read only when it lies inside `boundary`. None when there is none."""
    import os
    import urllib.parse

    candidates = []
    for link in record.get("links") or []:
        if not isinstance(link, dict) or link.get("rel") not in ("collection", "parent"):
            continue
        href = str(link.get("href", ""))
        if urllib.parse.urlsplit(href).scheme:
            continue
        candidates.append(Path(os.path.normpath(path.parent / urllib.parse.unquote(href))))
    candidates += list(extra)
    for candidate in candidates:
        if not inside(candidate, boundary):
            continue
        doc, _ = read_object(candidate)
        license_ = doc.get("license") if doc is not None else None
        if (
            doc is not None
            and doc.get("type") == "Collection"
            and isinstance(license_, str)
            and license_.strip()
        ):
            return license_
    return None


def walk_strings(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[str, str]]:
    """(pointer, string) for every string value (not keys) in a JSON value."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            yield pointer(where), item
        elif isinstance(item, dict):
            stack.extend((v, (*where, k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, (*where, i)) for i, v in reversed(list(enumerate(item))))


def placeholders(value: Any) -> list[str]:
    """Pointers of string values that say they are placeholders (KFM's stub convention)."""
    return sorted(where for where, text in walk_strings(value) if PLACEHOLDER_RE.search(text))
