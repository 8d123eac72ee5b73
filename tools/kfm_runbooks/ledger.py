"""The evidence ledger: `10_evidence/ledger.jsonl`, append-only and hash-chained.

Each line is one JSON object in the ledger's own persisted form (`entry_bytes`: sorted
keys, no spaces, UTF-8; Python's json.dumps, *not* RFC 8785, and never to change)::

    {"seq": 3, "time": "...Z", "kind": "run", "incident": "INC-...", "actor": "...",
     "data": {...}, "prev": "<hash of entry 2>", "hash": "<sha256 of this entry without hash>",
     "sig": {...}}

`sig` (signing.py) is present when a signing key is configured: an SSH signature over the
incident id, seq and `hash`. It is not part of what `hash` covers, so the chain verifies
with or without it; `verify` checks it. An incident opened with `require_signatures` in its
first entry's data refuses unsigned appends.

Editing any byte of an entry breaks its `hash`; removing or reordering entries breaks
`prev`/`seq`. Truncating the tail cannot be seen from the file alone: compare the head
with one recorded elsewhere (`verify --expect-head`). Appends happen under the workspace
lock. Light imports only: the in-kernel helper appends action entries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from . import redact, signing
from ._fs import NotRegularError, append_bytes, open_regular, read_regular, sha256_bytes
from ._time import now_iso
from .errors import DamagedError

GENESIS = "0" * 64
UNHASHED = frozenset({"hash", "sig"})  # the signature is over the hash, so outside it
REQUIRED = ("seq", "time", "kind", "incident", "actor", "data", "prev", "hash")
Views: TypeAlias = Mapping[str, str] | Callable[[int], Mapping[str, str]]


def entry_bytes(value: Any) -> bytes:
    """The ledger line format that every existing hash chain was computed over.

    Python's ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``:
    a persisted format, not a spec hash and not RFC 8785 (``1.0`` stays ``1.0``, keys sort
    by code point). Changing one byte of it would break every existing workspace's chain.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    body = {key: value for key, value in entry.items() if key not in UNHASHED}
    return sha256_bytes(entry_bytes(body))


def _incident_of(path: Path) -> str:
    return path.parent.parent.name


def _last_line(path: Path) -> tuple[bytes | None, bool]:
    """(the last non-empty line, whether the file ends with a newline), read from the end."""
    with os.fdopen(open_regular(path), "rb") as stream:
        stream.seek(0, os.SEEK_END)
        end = stream.tell()
        block = 4096
        data = b""
        pos = end
        while pos > 0:
            step = min(block, pos)
            pos -= step
            stream.seek(pos)
            data = stream.read(step) + data
            stripped = data.rstrip(b"\n")
            if b"\n" in stripped:
                return stripped.rsplit(b"\n", 1)[1], data.endswith(b"\n")
        stripped = data.rstrip(b"\n")
        return (stripped or None), data.endswith(b"\n")


def head(path: Path) -> dict[str, Any] | None:
    """The newest entry (its own hash unverified), or None for an empty ledger.

    DamagedError when the last line is torn or not an entry: nothing may be chained to it.
    """
    try:
        if not path.exists() and not path.is_symlink():
            return None
        line, complete = _last_line(path)
    except NotRegularError as exc:
        raise DamagedError(
            _incident_of(path), f"ledger.jsonl: {exc.kind}, not a regular file"
        ) from exc
    if line is None:
        return None
    if not complete:
        raise DamagedError(_incident_of(path), "ledger.jsonl: last line is incomplete (torn write)")
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise DamagedError(_incident_of(path), "ledger.jsonl: last line is not valid JSON") from exc
    problem = shape_problem(entry)
    if problem is not None:
        raise DamagedError(_incident_of(path), f"ledger.jsonl: last entry {problem}")
    assert isinstance(entry, dict)
    return entry


def shape_problem(entry: Any) -> str | None:
    """Why a parsed line is not a well-formed entry (None when it is)."""
    if not isinstance(entry, dict):
        return "is not a JSON object"
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        return f"is not a ledger entry ({'/'.join(missing)} missing)"
    if not isinstance(entry["data"], dict):
        return "data is not an object"
    if not isinstance(entry["seq"], int) or isinstance(entry["seq"], bool):
        return "seq is not an integer"
    if not all(isinstance(entry[key], str) for key in ("time", "kind", "incident", "actor")):
        return "time/kind/incident/actor are not strings"
    views = entry.get("views")
    if views is not None and not (
        isinstance(views, dict) and all(isinstance(v, str) for v in views.values())
    ):
        return "views are not an object of texts"
    return None


def append(
    path: Path,
    *,
    kind: str,
    incident: str,
    actor: str,
    data: dict[str, Any],
    views: Views | None = None,
) -> dict[str, Any]:
    """Append one entry chained to the current head. Caller holds the workspace lock.

    `views` (file relative to the workspace -> text, or a function of the new entry's seq
    returning that) are the bytes this entry appends to the records people read; the
    caller appends them after the entry is written (layout.Workspace.record).

    `data`, `actor` and the view texts are scrubbed of secrets first: a hash-chained entry
    can never be edited afterwards, so nothing secret may enter it.
    """
    data, actor = redact.clean(data), redact.clean(actor)
    last = head(path)
    seq = 0 if last is None else int(last["seq"]) + 1
    key = signing.configured_key()
    if key is not None:
        signing.check_key(key)
    elif (data.get("require_signatures") is True) if last is None else requires_signatures(path):
        raise signing.SigningKeyError(
            f"{incident} requires signed ledger entries and no signing key is configured: "
            f"pass --sign-key KEY or set ${signing.ENV}; nothing was written"
        )
    entry: dict[str, Any] = {
        "seq": seq,
        "time": now_iso(),
        "kind": kind,
        "incident": incident,
        "actor": actor,
        "data": data,
        "prev": GENESIS if last is None else str(last["hash"]),
    }
    texts = redact.clean(dict(views(seq) if callable(views) else views or {}))
    if texts:
        entry["views"] = texts
    entry["hash"] = entry_hash(entry)
    if key is not None:
        entry["sig"] = signing.sign_entry(key, incident, seq, entry["hash"])
    append_bytes(path, entry_bytes(entry) + b"\n")
    return entry


def requires_signatures(path: Path) -> bool:
    """Whether the incident's first entry made signing mandatory (it cannot be undone)."""
    try:
        with os.fdopen(open_regular(path), "rb") as stream:
            first = stream.readline()
    except (OSError, NotRegularError):
        return False
    try:
        entry = json.loads(first)
    except ValueError:
        return False
    data = entry.get("data") if isinstance(entry, dict) else None
    return isinstance(data, dict) and data.get("require_signatures") is True


@dataclass
class ChainReport:
    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def head_hash(self) -> str | None:
        return str(self.entries[-1]["hash"]) if self.entries else None


def check(path: Path) -> ChainReport:
    """Parse and verify the whole chain, naming each broken entry precisely.

    Only well-formed entries (objects with every field, `data` an object) are returned;
    each malformed line is a named problem.
    """
    report = ChainReport()
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        report.problems.append("ledger.jsonl is missing")
        return report
    except NotRegularError as exc:
        report.problems.append(f"ledger.jsonl: {exc.kind}, not a regular file")
        return report
    expected_prev = GENESIS
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    else:
        report.problems.append("ledger.jsonl: last line is incomplete (no newline): torn write")
    for line_no, line in enumerate(lines, start=1):
        where = f"ledger.jsonl line {line_no}"
        try:
            entry = json.loads(line)
        except ValueError:
            report.problems.append(f"{where}: not valid JSON or not UTF-8 (edited or torn)")
            expected_prev = "?"
            continue
        problem = shape_problem(entry)
        if problem is not None:
            report.problems.append(f"{where}: {problem}")
            expected_prev = "?"
            continue
        if entry_hash(entry) != entry.get("hash"):
            report.problems.append(
                f"{where} (seq {entry.get('seq')}): content does not match its hash: entry edited"
            )
        if entry.get("seq") != line_no - 1:
            report.problems.append(
                f"{where}: seq is {entry.get('seq')}, expected {line_no - 1}: "
                "entries removed, inserted or reordered"
            )
        if expected_prev != "?" and entry.get("prev") != expected_prev:
            report.problems.append(
                f"{where} (seq {entry.get('seq')}): prev does not match the hash of the entry "
                "before it: chain broken (removed, reordered or rewritten entries)"
            )
        expected_prev = str(entry.get("hash"))
        report.entries.append(entry)
    return report


def read_valid(path: Path) -> list[dict[str, Any]]:
    """Every entry, or DamagedError naming the first problem: for commands that build on it."""
    report = check(path)
    if report.problems:
        raise DamagedError(_incident_of(path), f"the ledger does not verify ({report.problems[0]})")
    return report.entries
