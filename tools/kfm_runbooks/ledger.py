"""The evidence ledger: `10_evidence/ledger.jsonl`, append-only and hash-chained.

Each line is one canonical JSON object (sorted keys, no spaces, UTF-8)::

    {"seq": 3, "time": "...Z", "kind": "run", "incident": "INC-...", "actor": "...",
     "data": {...}, "prev": "<hash of entry 2>", "hash": "<sha256 of this entry without hash>"}

Editing any byte of an entry breaks its `hash`; removing or reordering entries breaks
`prev`/`seq`. Truncating the tail cannot be seen from the file alone: compare the head
with one recorded elsewhere (`verify --expect-head`). Appends happen under the workspace
lock. Light imports only: the in-kernel helper appends action entries.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import redact
from ._fs import append_bytes, sha256_bytes
from ._time import now_iso

GENESIS = "0" * 64


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    body = {key: value for key, value in entry.items() if key != "hash"}
    return sha256_bytes(canonical(body))


def _last_line(path: Path) -> bytes | None:
    """The last non-empty line of a file, read from the end."""
    with path.open("rb") as stream:
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
                return stripped.rsplit(b"\n", 1)[1]
        stripped = data.rstrip(b"\n")
        return stripped or None


def head(path: Path) -> dict[str, Any] | None:
    """The newest entry (unverified), or None for an empty ledger."""
    if not path.exists():
        return None
    line = _last_line(path)
    if line is None:
        return None
    entry: dict[str, Any] = json.loads(line)
    return entry


def append(
    path: Path, *, kind: str, incident: str, actor: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Append one entry chained to the current head. Caller holds the workspace lock.

    `data` and `actor` are scrubbed of secrets first: a hash-chained entry can never be
    edited afterwards, so nothing secret may enter it.
    """
    data, actor = redact.clean(data), redact.clean(actor)
    last = head(path)
    entry: dict[str, Any] = {
        "seq": 0 if last is None else int(last["seq"]) + 1,
        "time": now_iso(),
        "kind": kind,
        "incident": incident,
        "actor": actor,
        "data": data,
        "prev": GENESIS if last is None else str(last["hash"]),
    }
    entry["hash"] = entry_hash(entry)
    append_bytes(path, canonical(entry) + b"\n")
    return entry


@dataclass
class ChainReport:
    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def head_hash(self) -> str | None:
        return str(self.entries[-1]["hash"]) if self.entries else None


def check(path: Path) -> ChainReport:
    """Parse and verify the whole chain, naming each broken entry precisely."""
    report = ChainReport()
    if not path.exists():
        report.problems.append("ledger.jsonl is missing")
        return report
    expected_prev = GENESIS
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    else:
        report.problems.append("ledger.jsonl: last line is incomplete (no newline): torn write")
    for line_no, raw in enumerate(lines, start=1):
        where = f"ledger.jsonl line {line_no}"
        try:
            entry = json.loads(raw)
        except ValueError:
            report.problems.append(f"{where}: not valid JSON (edited or torn)")
            expected_prev = "?"
            continue
        if not isinstance(entry, dict) or not {"seq", "hash", "prev"} <= entry.keys():
            report.problems.append(f"{where}: not a ledger entry (seq/prev/hash missing)")
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
