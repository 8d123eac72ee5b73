"""The incident workspace layout and its append-only writers (light: kernel-safe).

    INC-YYYYMMDD-###/
    ├─ 00_meta/incident.yaml, timeline.md
    ├─ 10_evidence/logs/, screenshots/, queries/, runs/, hashes.sha256, ledger.jsonl
    ├─ 20_actions/commands.md, diffs/, rollback.md
    ├─ 30_verification/checks.md, metrics.md
    └─ 90_postmortem/

Every append (ledger, manifest, timeline, commands, rollback, checks) happens while the
workspace lock (`<workspace>/.lock`) is held, from the CLI and from kernels alike.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ledger, redact
from ._fs import append_bytes, file_lock
from ._time import iso, utc_now

if TYPE_CHECKING:
    from .incident import Incident

ACTOR_ENV = "KFM_ACTOR"
LAYOUT_DIRS = (
    "00_meta",
    "10_evidence",
    "10_evidence/logs",
    "10_evidence/screenshots",
    "10_evidence/queries",
    "10_evidence/runs",
    "20_actions",
    "20_actions/diffs",
    "30_verification",
    "90_postmortem",
)


def default_actor() -> str:
    """Who is acting: $KFM_ACTOR, else user@host."""
    explicit = os.environ.get(ACTOR_ENV, "").strip()
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Workspace:
    root: Path
    incident_id: str

    @property
    def path(self) -> Path:
        return self.root / self.incident_id

    @property
    def meta(self) -> Path:
        return self.path / "00_meta"

    @property
    def evidence(self) -> Path:
        return self.path / "10_evidence"

    @property
    def runs(self) -> Path:
        return self.evidence / "runs"

    @property
    def actions(self) -> Path:
        return self.path / "20_actions"

    @property
    def verification(self) -> Path:
        return self.path / "30_verification"

    @property
    def postmortem(self) -> Path:
        return self.path / "90_postmortem"

    @property
    def incident_yaml(self) -> Path:
        return self.meta / "incident.yaml"

    @property
    def timeline(self) -> Path:
        return self.meta / "timeline.md"

    @property
    def ledger(self) -> Path:
        return self.evidence / "ledger.jsonl"

    @property
    def manifest(self) -> Path:
        return self.evidence / "hashes.sha256"

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialises every append (ledger, manifest, timeline, actions) in this workspace."""
        with file_lock(self.lock_path):
            yield

    def load(self) -> Incident:
        from .incident import load

        return load(self.incident_yaml)

    def append_timeline(self, text: str) -> None:
        """Append one line. Caller holds the lock. Newlines are flattened: one event, one line
        (after scrubbing: a multi-line key must still be whole when it is looked for)."""
        flat = " ".join(redact.clean(text).split())
        stamp = iso(utc_now()).replace(".000Z", "Z")
        append_bytes(self.timeline, f"- {stamp} — {flat}\n".encode())

    def append_record(self, path: Path, text: str) -> None:
        """Append to a record people read (commands.md, rollback.md, checks.md, metrics.md),
        scrubbed of secrets. Caller holds the lock."""
        append_bytes(path, redact.clean(text).encode())

    def record(self, kind: str, data: dict[str, Any], actor: str) -> dict[str, Any]:
        """Append a ledger entry. Caller holds the lock."""
        return ledger.append(
            self.ledger, kind=kind, incident=self.incident_id, actor=actor, data=data
        )
