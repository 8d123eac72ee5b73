"""Strict JSON for catalog records: bounded reads, JSON pointers, placeholders, RFC 8785.

Shared by the catalog-record runbooks (STAC/DCAT/PROV validation, license / sensitivity
labels, provenance). Read errors are returned as KFM's stable codes (the codes KFM's
validators use, unprefixed): FILE_NOT_FOUND, INPUT_SYMLINK_DENIED, JSON_DUPLICATE_KEY,
JSON_INVALID, JSON_NONFINITE_NUMBER, JSON_NOT_UTF8, JSON_COMPLEXITY_LIMIT,
ROOT_NOT_OBJECT, FILE_TOO_LARGE, FILE_READ_ERROR. Hostile input never raises.

`spec_hash` is KFM's content identity: ``sha256:`` + SHA-256 of the RFC 8785 (JCS)
canonical form. JCS is implemented here with the standard library (sorted keys by UTF-16
code units, no whitespace, ECMAScript number formatting).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from . import strict_json

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
    try:
        if path.is_symlink():
            return None, "INPUT_SYMLINK_DENIED"
        if not path.is_file():
            return None, "FILE_NOT_FOUND"
        if path.stat().st_size > MAX_RECORD_BYTES:
            return None, "FILE_TOO_LARGE"
        data = path.read_bytes()
    except OSError:
        return None, "FILE_READ_ERROR"
    value, code = parse_json(data)
    if code is not None:
        return None, code
    if not isinstance(value, dict):
        return None, "ROOT_NOT_OBJECT"
    return value, None


def inside(path: Path, base: Path) -> bool:
    """Is `path` (not following its last component) inside `base`?"""
    try:
        path.parent.resolve().joinpath(path.name).relative_to(base.resolve())
    except (OSError, ValueError):
        return False
    return True


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


def rel(path: Path, base: Path) -> str:
    """A stable display path: relative to `base` when inside it, else the file name."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name


def pointer(parts: Any) -> str:
    """RFC 6901 JSON pointer for a path of keys / indexes ('/' for the root)."""
    encoded = [str(p).replace("~", "~0").replace("/", "~1") for p in parts]
    return "/" + "/".join(encoded) if encoded else "/"


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


# --- RFC 8785 JSON Canonicalization Scheme -------------------------------------------


class CanonicalizationError(ValueError):
    """A value outside the JSON domain JCS admits (NaN, lone surrogates, non-JSON types)."""


def _number(value: float) -> str:
    """ECMAScript Number.prototype.toString, as RFC 8785 requires."""
    if not math.isfinite(value):
        raise CanonicalizationError("non-finite number")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digits_tuple = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(str(d) for d in digits_tuple.digits)
    exponent = digits_tuple.exponent
    assert isinstance(exponent, int)
    k = len(digits)
    n = exponent + k  # value = 0.digits × 10^n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + text


def _string(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("lone surrogate in string") from exc
    return json.dumps(value, ensure_ascii=False)


def _canonical(value: Any, out: list[str], depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise CanonicalizationError("nesting too deep")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value) if abs(value) <= 2**53 else _number(float(value)))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, list):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _canonical(item, out, depth + 1)
        out.append("]")
    elif isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise CanonicalizationError("object key is not a string")
        out.append("{")
        for index, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _canonical(value[key], out, depth + 1)
        out.append("}")
    else:
        raise CanonicalizationError(f"{type(value).__name__} is not a JSON value")


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value."""
    out: list[str] = []
    _canonical(value, out)
    return "".join(out).encode("utf-8")


def spec_hash(value: Any) -> str:
    """KFM spec_hash: ``sha256:<hex>`` of the JCS bytes."""
    return "sha256:" + hashlib.sha256(canonical_bytes(value)).hexdigest()
