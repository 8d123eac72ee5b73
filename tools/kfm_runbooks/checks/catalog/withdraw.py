"""Reversible withdrawal of catalog records from publication (quarantine / withhold).

A withdrawn record leaves the published folder byte-for-byte: it is kept in a holding
folder (`<holding>/<safe name>/record`, with `withdrawn.json` saying where it came from,
why, its sha256 and for which incident). Withdrawing a record that is already held
changes nothing; restoring puts the identical bytes back (never over a different file)
and is also safe to run twice. Used by the catalog-record runbooks only through
`run.action`; `kfm-runbook rollback` calls `catalog_withdraw.restore`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..._fs import create_new, replace_atomic
from ..._time import now_iso
from ...errors import TargetError
from ...target import Target
from .. import undoable
from ..common import json as strict_json
from ..common.files import read_regular

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
META = "withdrawn.json"
RECORD = "record"
MAX_RECORD_BYTES = 64 << 20  # a published record moved whole; larger ones are refused
MAX_META_BYTES = 1 << 20


def _read(path: Path) -> bytes:
    """A record's bytes: a link swapped in, a FIFO or an oversized file raises, unread."""
    return read_regular(path, MAX_RECORD_BYTES)


@dataclass(frozen=True)
class Holding:
    """Where published records live (`base`) and where withdrawn ones are kept."""

    base: Path
    folder: Path

    @classmethod
    def from_section(cls, target: Target, section: str, key: str) -> Holding:
        base = target.resolve(section, "base", required=False) or target.base
        folder = target.resolve(section, key, required=False)
        return cls(base=base, folder=folder or base / key)


def _safe_rel(rel: str) -> str:
    """A relative POSIX path inside base, or ValueError (undo args come from the ledger)."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or any(p in ("", ".", "..") for p in pure.parts):
        raise ValueError(f"not a safe relative record path: {rel!r}")
    return pure.as_posix()


def slot(holding: Holding, rel: str) -> Path:
    """The record's folder in the holding area (readable name + hash: never shared)."""
    rel = _safe_rel(rel)
    name = _UNSAFE.sub("_", rel.replace("/", "__")).lstrip(".")[:120] or "record"
    return holding.folder / f"{name}-{hashlib.sha256(rel.encode()).hexdigest()[:8]}"


def relative(holding: Holding, path: Path) -> str:
    try:
        return _safe_rel(path.relative_to(holding.base).as_posix())
    except ValueError as exc:
        raise ValueError(f"{path.name} is not inside the published folder") from exc


def is_held(holding: Holding, rel: str) -> bool:
    return (slot(holding, rel) / META).is_file()


def held(holding: Holding) -> list[dict[str, Any]]:
    """The withdrawal records of everything currently held, sorted by original path."""
    if not holding.folder.is_dir():
        return []
    out = []
    for meta in sorted(holding.folder.glob(f"*/{META}")):
        try:
            out.append(strict_json.load_file(meta, MAX_META_BYTES))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda m: str(m.get("path")))


def withdraw(
    holding: Holding, path: Path, *, reason: str, incident: str, kind: str
) -> dict[str, Any]:
    """Move one published record into the holding folder. Idempotent."""
    rel = relative(holding, path)
    folder = slot(holding, rel)
    meta_path = folder / META
    if meta_path.is_file() and not os.path.lexists(path):
        existing: dict[str, Any] = strict_json.load_file(meta_path, MAX_META_BYTES)
        return {**existing, "already": True}
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "path": rel,
        "kind": kind,
        "reason": reason,
        "incident": incident,
        "withdrawn_at": now_iso(),
    }
    if meta_path.is_file():  # held before, and published again since: same bytes only
        held_meta = strict_json.load_file(meta_path, MAX_META_BYTES)
        same = (
            held_meta.get("symlink") == str(path.readlink())
            if path.is_symlink()
            else held_meta.get("sha256") == hashlib.sha256(_read(path)).hexdigest()
        )
        if not same:
            raise FileExistsError(
                f"{rel}: a different copy is already held; restore or discard it first"
            )
        path.unlink()
        return {**held_meta, "already": True}
    if path.is_symlink():
        meta["symlink"] = str(path.readlink())
    else:
        data = _read(path)
        meta["sha256"] = hashlib.sha256(data).hexdigest()
        if not (folder / RECORD).exists():
            create_new(folder / RECORD, data)
        elif _read(folder / RECORD) != data:  # left by an interrupted withdrawal
            raise FileExistsError(f"{rel}: the holding slot has other bytes; inspect it first")
    replace_atomic(meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    path.unlink()
    return {**meta, "already": False}


def restore(holding: Holding, rel: str) -> dict[str, Any]:
    """Undo `withdraw`: republish the identical bytes. Idempotent, never overwrites."""
    rel = _safe_rel(rel)
    folder = slot(holding, rel)
    meta_path = folder / META
    if not meta_path.is_file():
        return {"path": rel, "restored": False, "reason": "not withdrawn"}
    meta = strict_json.load_file(meta_path, MAX_META_BYTES)
    original = holding.base / rel
    if os.path.lexists(original):
        return {"path": rel, "restored": False, "reason": "a file is published there already"}
    original.parent.mkdir(parents=True, exist_ok=True)
    if "symlink" in meta:
        original.symlink_to(meta["symlink"])
    else:
        data = _read(folder / RECORD)
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            return {"path": rel, "restored": False, "reason": "held bytes changed: not restored"}
        create_new(original, data)
        (folder / RECORD).unlink()
    meta_path.unlink()
    folder.rmdir()
    return {"path": rel, "restored": True}


@undoable("catalog_withdraw.restore")
def _undo_restore(target: Target, section: str, key: str, path: str) -> dict[str, Any]:
    if key not in ("quarantine", "withheld") or not target.has(section):
        raise TargetError(f"target has no '{section}' section with a '{key}' folder")
    return restore(Holding.from_section(target, section, key), path)
