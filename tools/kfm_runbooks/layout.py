"""The incident workspace layout and its append-only writers (light: kernel-safe).

    INC-YYYYMMDD-###/
    ├─ 00_meta/incident.yaml, timeline.md
    ├─ 10_evidence/logs/, screenshots/, queries/, runs/, hashes.sha256, ledger.jsonl
    ├─ 20_actions/commands.md, diffs/, rollback.md
    ├─ 30_verification/checks.md, metrics.md
    └─ 90_postmortem/

Every append (ledger, manifest, timeline, commands, rollback, checks) happens while the
workspace lock (`<workspace>/.lock`) is held, from the CLI and from kernels alike.

The ledger is the truth and the records people read are views of it: every byte appended
to timeline.md, commands.md, rollback.md, checks.md and metrics.md is first written into
the ledger entry it belongs to (`views`), then appended to the file, so `verify` can
rebuild each file from the ledger and compare. A kill between the two leaves the newest
entry's views unapplied; the next writer (any command, any kernel) completes them before it
appends, as it finishes a publication the newest entry announced (evidence.py).
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ledger
from ._fs import LOCK_TIMEOUT_S, append_bytes, file_lock, open_regular, sha256_regular
from .errors import DamagedError, SetupError
from .ledger import Views
from .views import CHECKS as CHECKS
from .views import COMMANDS as COMMANDS
from .views import METRICS as METRICS
from .views import ROLLBACK as ROLLBACK
from .views import TIMELINE as TIMELINE
from .views import VIEWS as VIEWS
from .views import timeline_line as timeline_line
from .vocab import LedgerKind

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
        """Serialises every append (ledger, manifest, timeline, actions) in this workspace.

        Re-entrant within a thread (recovery seals a run while holding the lock); other
        threads of this process wait as other processes do."""
        guard, depth = _held(self.lock_path)
        if not guard.acquire(timeout=LOCK_TIMEOUT_S):
            raise SetupError(
                f"could not lock {self.lock_path} within {LOCK_TIMEOUT_S:.0f}s: another "
                "thread holds it; wait for it to finish and retry"
            )
        try:
            if depth[0] > 0:
                depth[0] += 1
                try:
                    yield
                finally:
                    depth[0] -= 1
                return
            with file_lock(self.lock_path):
                depth[0] = 1
                try:
                    yield
                finally:
                    depth[0] = 0
        finally:
            guard.release()

    def load(self) -> Incident:
        """The incident record as the ledger last recorded it.

        Built from the ledger (the record each lifecycle entry carries), and only while
        00_meta/incident.yaml is byte for byte the version that entry hashed: an edited,
        replaced or missing file is DamagedError (pointing to `verify`), so no command
        builds on a record the ledger does not vouch for.
        """
        from .incident import Incident, load

        recorded, record = self.recorded_record()
        try:
            actual: str | None = sha256_regular(self.incident_yaml)[0]
        except FileNotFoundError:
            actual = None
        except OSError as exc:
            raise DamagedError(self.incident_id, f"00_meta/incident.yaml: {exc}") from exc
        if recorded is not None and actual != recorded:
            what = "is missing" if actual is None else "was edited outside kfm-runbook"
            raise DamagedError(
                self.incident_id,
                f"00_meta/incident.yaml {what} (its sha256 is not {recorded[:16]}…, the one "
                "the ledger last recorded)",
            )
        if record is not None:
            return Incident.model_validate(record)
        return load(self.incident_yaml)

    def recorded_record(self) -> tuple[str | None, dict[str, Any] | None]:
        """(sha256, record) of incident.yaml from the newest ledger entry that wrote it."""
        for entry in reversed(ledger.read_valid(self.ledger)):
            value = entry["data"].get("incident_yaml_sha256")
            if isinstance(value, str):
                record = entry["data"].get("record")
                return value, record if isinstance(record, dict) else None
        return None, None

    def record(
        self,
        kind: str,
        data: dict[str, Any],
        actor: str,
        views: Views | None = None,
    ) -> dict[str, Any]:
        """Append a ledger entry and the view texts it carries. Caller holds the lock.

        First completes what a kill may have left of the newest entry (its views, or the
        publication it announced), so nothing is ever chained after unfinished work.
        """
        last = ledger.head(self.ledger)
        if last is not None:
            self.complete(last)
        return self.append_entry(kind, data, actor, views)

    def append_entry(
        self, kind: str, data: dict[str, Any], actor: str, views: Views | None = None
    ) -> dict[str, Any]:
        """Ledger entry, then its views appended to their files (no completion step)."""
        entry = ledger.append(
            self.ledger, kind=kind, incident=self.incident_id, actor=actor, data=data, views=views
        )
        self.apply_views(entry)
        return entry

    def apply_views(self, entry: dict[str, Any]) -> None:
        for rel, text in (entry.get("views") or {}).items():
            path = self.view_path(rel)
            append_bytes(path, text.encode())

    def view_path(self, rel: str) -> Path:
        if rel not in VIEWS:
            raise DamagedError(self.incident_id, f"ledger names an unknown view {rel!r}")
        return self.path / rel

    def complete(self, last: dict[str, Any]) -> None:
        """Finish the newest entry: append view text a kill cut off, finish a publication."""
        for rel, text in (last.get("views") or {}).items():
            missing = _missing_suffix(self.view_path(rel), text.encode())
            if missing:
                append_bytes(self.view_path(rel), missing)
        if last.get("kind") == LedgerKind.PUBLISH_INTENT:
            from .evidence import finish

            finish(self, last)
        sha, record = last["data"].get("incident_yaml_sha256"), last["data"].get("record")
        if isinstance(sha, str) and isinstance(record, dict) and last["seq"] > 0:
            self._complete_record(int(last["seq"]), sha, record)

    def _complete_record(self, seq: int, sha: str, record: dict[str, Any]) -> None:
        """Write incident.yaml from the newest entry when a kill left the previous version
        (the ledger is written first); any other content is an edit, left for `verify`."""
        try:
            actual = sha256_regular(self.incident_yaml)[0]
        except OSError:
            return
        if actual == sha:
            return
        previous = next(
            (
                e["data"].get("incident_yaml_sha256")
                for e in reversed(ledger.read_valid(self.ledger)[:seq])
                if isinstance(e["data"].get("incident_yaml_sha256"), str)
            ),
            None,
        )
        if actual != previous:
            return
        from ._fs import replace_atomic, sha256_bytes
        from .incident import Incident

        text = Incident.model_validate(record).to_yaml().encode()
        if sha256_bytes(text) == sha:
            replace_atomic(self.incident_yaml, text)


_HELD: dict[Path, tuple[threading.RLock, list[int]]] = {}
_HELD_GUARD = threading.Lock()


def _held(lock_path: Path) -> tuple[threading.RLock, list[int]]:
    with _HELD_GUARD:
        return _HELD.setdefault(lock_path, (threading.RLock(), [0]))


def _missing_suffix(path: Path, text: bytes) -> bytes:
    """`text` when `path` does not end with it yet (b"" when it does).

    One small O_APPEND write is all or nothing, so the question is binary; a file that
    was edited instead is left for `verify` to name.
    """
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return text
    with os.fdopen(fd, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        stream.seek(max(0, size - len(text)))
        return b"" if stream.read() == text else text
