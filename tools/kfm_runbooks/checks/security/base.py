"""Helpers shared by the security runbooks' checks: safe reads, paths, fingerprints.

Everything a security runbook reads comes from a target that may be hostile: paths are
checked lexically before the filesystem is touched, symlinks are refused, files are size
limited, JSON is read strictly (no duplicate keys, no NaN) and YAML only with
`safe_load`. Failures come back as finding codes, never as exceptions.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ..._fs import replace_atomic
from ..common import json as strict_json
from ..common.files import FileProblem, read_bounded
from ..common.paths import lexically_inside
from ..common.paths import rel as rel  # re-exported for security_*

inside = lexically_inside  # the security checks' name for it

MAX_FILE_BYTES = 4 * 1_048_576
FINGERPRINT_HEX = 8


def fingerprint(value: str | bytes) -> str:
    """A short, non-reversible handle for a secret: `fp:` + the first 8 hex of its sha256.

    It tells two credentials apart and lets a rotation be matched to an exposure; it is
    never the secret and (8 hex digits) too short to confirm a guess of a strong secret.
    """
    data = value.encode("utf-8") if isinstance(value, str) else value
    return "fp:" + hashlib.sha256(data).hexdigest()[:FINGERPRINT_HEX]


def symlink_on_path(path: Path, base: Path) -> bool:
    """Is `path`, or any folder between `base` and it, a symlink?"""
    candidate = Path(os.path.normpath(path))
    boundary = Path(os.path.normpath(base))
    if not inside(candidate, boundary):
        return True
    current = boundary
    for part in candidate.relative_to(boundary).parts:
        current = current / part
        if current.is_symlink():
            return True
    return False


def walk_files(roots: tuple[Path, ...], base: Path, skip: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Regular files under `roots` (files or folders), sorted, never following symlinks.

    Roots outside `base` and anything under a `skip` folder are left out; symlinks are
    yielded (so callers can report them) but never descended into.
    """
    seen: set[Path] = set()
    for root in roots:
        if not inside(root, base):
            continue
        if root.is_symlink() or root.is_file():
            candidates = [root]
        elif root.is_dir():
            candidates = sorted(_walk(root))
        else:
            continue
        for path in candidates:
            if path in seen or any(inside(path, s) for s in skip):
                continue
            seen.add(path)
            yield path


def _walk(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        for name in dirnames:
            if (here / name).is_symlink():
                yield here / name
        for name in sorted(filenames):
            yield here / name


def read_bytes(path: Path, limit: int = MAX_FILE_BYTES) -> tuple[bytes | None, str | None]:
    """(bytes, None) or (None, code): symlinks, specials and oversized files are refused."""
    data, problem = read_bounded(path, limit)
    if data is None:
        return None, _READ_PROBLEM_CODES[problem or FileProblem.UNREADABLE]
    return data, None


_READ_PROBLEM_CODES = {
    FileProblem.MISSING: "SEC_FILE_NOT_FOUND",
    FileProblem.LINK: "SEC_INPUT_SYMLINK_DENIED",
    FileProblem.NOT_REGULAR: "SEC_FILE_NOT_REGULAR",
    FileProblem.TOO_LARGE: "SEC_FILE_TOO_LARGE",
    FileProblem.UNREADABLE: "SEC_FILE_READ_ERROR",
}


def parse_json(data: bytes) -> tuple[Any, str | None]:
    """Strict JSON: (value, None) or (None, code)."""
    value, kind = strict_json.parse(data)
    if kind is None:
        return value, None
    return None, "SEC_JSON_INVALID" if kind == "TOO_DEEP" else f"SEC_JSON_{kind}"


def read_json(path: Path) -> tuple[Any, str | None]:
    data, code = read_bytes(path)
    if data is None:
        return None, code
    return parse_json(data)


def read_yaml(path: Path) -> tuple[Any, str | None]:
    """YAML (safe_load) or JSON by extension: (value, None) or (None, code)."""
    data, code = read_bytes(path)
    if data is None:
        return None, code
    if path.suffix.lower() == ".json":
        return parse_json(data)
    return parse_yaml(data)


def parse_yaml(data: bytes) -> tuple[Any, str | None]:
    try:
        return yaml.safe_load(data.decode("utf-8")), None
    except UnicodeDecodeError:
        return None, "SEC_YAML_NOT_UTF8"
    except (yaml.YAMLError, RecursionError):
        return None, "SEC_YAML_INVALID"


def dump_yaml(value: Any) -> bytes:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True).encode("utf-8")


def write_yaml(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, dump_yaml(value))


def private_folder(path: Path) -> Path:
    """Create `path` readable by its owner only (it may hold what must not leak)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
