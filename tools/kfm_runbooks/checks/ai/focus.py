"""Focus Mode of a live target, as the ai runbooks see it: reference, state, probes, log.

`FocusSystem.from_target(target)` wraps `checks.live.Live` with what every ai runbook needs:
the intended Focus Mode (live/config.json `flags` and `focus`: corpus, input gate
patterns, evaluation set, minimum accuracy), the running state (state/flags.json,
state/focus_index.json), questions asked through the real API (`ask`, from the
client label `PROBE_CLIENT` so the runbooks' own traffic is told apart in the logs) and
the decision log (logs/focus.jsonl, read defensively: a malformed line is counted, never
raised). Reads never change anything.

The state-changing helpers (`set_flags`, `write_index`) are used only through
`run.action`; each has a registered undo (`ai_focus.restore_flags`,
`ai_focus.restore_index`) so `kfm-runbook rollback` can put the previous state back. Flags
change through the API's admin endpoint (the operators' control plane, which leaves an
access-log line); the index is written with `Live.write_state`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._fs import open_regular, replace_atomic
from ...errors import TargetError
from ...target import Target
from .. import undoable
from ..common.files import read_regular
from ..live import MAX_STATE_BYTES, Live
from . import reference as ai_reference

PROBE_CLIENT = "kfm-runbook-probe"
PROBE_AGENT = "kfm-runbook/ai-probe"
INDEX_FILE = "focus_index.json"
FLAGS_FILE = "flags.json"
LOG_TAIL_BYTES = 4 << 20  # read at most the last 4 MiB of the decision log
ABSTAIN_ANSWER = "No KFM dataset matches this question."


@dataclass(frozen=True)
class Answer:
    """One question asked through POST /api/v1/focus, and what came back."""

    label: str
    question: str
    status: int  # 0: the API could not be reached
    citations: tuple[str, ...] = ()
    gate: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    text: str = ""

    @property
    def answered(self) -> bool:
        return self.status == 200

    @property
    def blocked_by_gate(self) -> bool:
        return self.status == 422 and self.gate.get("decision") == "block"

    @property
    def withheld_uncited(self) -> bool:
        """Withheld by the citation policy gate (block_uncited_answers)."""
        return self.status == 422 and "no citations" in self.error

    @property
    def disabled(self) -> bool:
        return self.status == 503 and "disabled" in self.error

    @property
    def index_unavailable(self) -> bool:
        return self.status == 503 and "index" in self.error

    @property
    def outcome(self) -> str:
        """A short, stable word for tables: answered / blocked / withheld / ... ."""
        if self.status == 0:
            return "unreachable"
        if self.answered:
            return "answered" if self.text != ABSTAIN_ANSWER else "abstained"
        if self.blocked_by_gate:
            return "blocked"
        if self.withheld_uncited:
            return "withheld"
        if self.disabled:
            return "disabled"
        if self.index_unavailable:
            return "no-index"
        return f"http-{self.status}"

    def as_row(self) -> dict[str, Any]:
        return {
            "probe": self.label,
            "status": self.status,
            "outcome": self.outcome,
            "citations": list(self.citations),
            "gate": self.gate.get("decision", "-"),
        }


@dataclass(frozen=True)
class LogEntry:
    """One Focus Mode decision from logs/focus.jsonl."""

    line: int
    client: str
    question: str
    citations: tuple[str, ...]
    gate: dict[str, Any]
    error: str
    time: str
    question_sha256: str = ""

    @property
    def probe(self) -> bool:
        return self.client == PROBE_CLIENT

    @property
    def answered(self) -> bool:
        """Logged without an error: the client got a 200 answer."""
        return not self.error


@dataclass(frozen=True)
class LogSample:
    entries: list[LogEntry]
    malformed: int
    missing: bool
    truncated: bool


@dataclass(frozen=True)
class FocusSystem:
    live: Live

    @classmethod
    def from_target(cls, target: Target) -> FocusSystem | None:
        """The target's Focus Mode, or None when the target has no live side."""
        if not target.has("live"):
            return None
        return cls(Live.from_target(target))

    # -- the reference (what was intended) ---------------------------------------------

    @property
    def reference(self) -> dict[str, Any]:
        return self.live.config

    @property
    def focus(self) -> dict[str, Any]:
        value = self.reference.get("focus")
        if not isinstance(value, dict):
            raise TargetError(f"{self.live.config_path}: no 'focus' section in the live config")
        return value

    @property
    def corpus(self) -> list[dict[str, Any]]:
        return list(self.focus.get("corpus", []))

    @property
    def corpus_ids(self) -> set[str]:
        return {str(doc.get("id")) for doc in self.corpus}

    @property
    def patterns(self) -> list[str]:
        return list(self.focus.get("input_gate", {}).get("blocked_patterns", []))

    @property
    def evaluation(self) -> list[dict[str, Any]]:
        return list(self.focus.get("evaluation", []))

    @property
    def min_accuracy(self) -> float:
        return float(self.focus.get("min_eval_accuracy", 1.0))

    def reference_flag(self, name: str) -> bool:
        return bool(self.reference.get("flags", {}).get(name, False))

    def expected_index(self) -> dict[str, Any]:
        """The index a correct build of the reference corpus produces."""
        return ai_reference.build_index(self.corpus)

    def expected_docs(self, question: str) -> list[str]:
        """What a correct index would cite for `question` (the same retriever)."""
        return [doc_id for doc_id, _ in ai_reference.retrieve(self.expected_index(), question)]

    # -- the running state ------------------------------------------------------------

    def flags(self) -> dict[str, Any]:
        """state/flags.json ({} when missing or unreadable: the server then uses defaults)."""
        try:
            value = self.live.read_state(FLAGS_FILE)
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def flag(self, name: str) -> bool:
        """A flag as the server reads it (focus.py's defaults when absent)."""
        defaults = {
            "input_gate_enforced": True,
            "citations_required": True,
            "focus_enabled": True,
            "block_uncited_answers": False,
        }
        return bool(self.flags().get(name, defaults.get(name, False)))

    def index_path(self) -> Path:
        return self.live.state_dir / INDEX_FILE

    def index_bytes(self) -> bytes | None:
        """The running index's bytes; None when missing. A link swapped in, a FIFO or an
        oversized index raises `FileProblemError` (an OSError), never followed."""
        try:
            return read_regular(self.index_path(), MAX_STATE_BYTES)
        except FileNotFoundError:
            return None

    def index(self) -> dict[str, Any] | None:
        """The running index, parsed (None when missing or unreadable)."""
        try:
            raw = self.index_bytes()
            value = json.loads(raw) if raw is not None else None
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            return None
        return value if isinstance(value, dict) else None

    def services_error(self) -> str | None:
        """Why the API cannot be asked (None when it answers /health at all)."""
        try:
            self.live.request("/health", timeout=10)
        except TargetError as exc:
            return exc.message
        except OSError as exc:
            return f"the API at {self.live.url} does not answer: {type(exc).__name__}"
        return None

    # -- asking the running system ------------------------------------------------------

    def ask(self, label: str, question: str, retries: int = 3) -> Answer:
        """POST one question to Focus Mode as the probe client (429: wait and retry)."""
        headers = {"X-Forwarded-For": PROBE_CLIENT, "User-Agent": PROBE_AGENT}
        for attempt in range(retries + 1):
            try:
                response = self.live.request(
                    "/api/v1/focus", method="POST", body={"question": question}, headers=headers
                )
            except (TargetError, OSError) as exc:
                return Answer(label, question, 0, error=type(exc).__name__)
            if response.status == 429 and attempt < retries:
                time.sleep(1.0)
                continue
            break
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        citations = body.get("citations")
        gate = body.get("gate")
        return Answer(
            label,
            question,
            response.status,
            tuple(str(c) for c in citations) if isinstance(citations, list) else (),
            gate if isinstance(gate, dict) else {},
            str(body.get("error", "")),
            str(body.get("answer", "")),
        )

    def health(self) -> tuple[int, dict[str, Any]]:
        """GET /health: (status, body); (0, {}) when unreachable."""
        try:
            response = self.live.request("/health", timeout=10)
            body = response.json()
        except (TargetError, OSError, ValueError):
            return 0, {}
        return response.status, body if isinstance(body, dict) else {}

    def catalog_ids(self) -> set[str] | None:
        """Item ids the catalog API serves (None when it cannot be read)."""
        try:
            response = self.live.request("/api/v1/catalog/items", role="public")
            items = response.json().get("items", []) if response.status == 200 else None
        except (TargetError, OSError, ValueError, AttributeError):
            return None
        if not isinstance(items, list):
            return None
        return {str(item.get("id")) for item in items if isinstance(item, dict)}

    # -- the decision log ----------------------------------------------------------------

    def log_path(self) -> Path:
        return self.live.logs_dir / "focus.jsonl"

    def log_size(self) -> int:
        try:
            return self.log_path().stat().st_size
        except OSError:
            return 0

    def read_log(self, since: int = 0, last: int | None = None) -> LogSample:
        """Decision-log entries from byte offset `since` (the last `last` when given)."""
        return read_log(self.log_path(), since=since, last=last)


def read_log(path: Path, since: int = 0, last: int | None = None) -> LogSample:
    """Parse a focus.jsonl file defensively (bad lines are counted, not raised)."""
    try:  # a link is refused (O_NOFOLLOW), never followed; a FIFO never blocks
        stream = os.fdopen(open_regular(path), "rb")
    except OSError:
        return LogSample([], 0, True, False)
    with stream:
        size = os.fstat(stream.fileno()).st_size
        start = max(since, size - LOG_TAIL_BYTES)
        truncated = start > since
        stream.seek(start)
        raw = stream.read(max(0, size - start))
    lines = raw.decode("utf-8", errors="replace").split("\n")
    if truncated and lines:
        lines = lines[1:]  # the first line may be cut in half
    entries: list[LogEntry] = []
    malformed = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        entry = _entry(number, line)
        if entry is None:
            malformed += 1
        else:
            entries.append(entry)
    if last is not None and len(entries) > last:
        entries, truncated = entries[-last:], True
    return LogSample(entries, malformed, False, truncated)


def _entry(number: int, line: str) -> LogEntry | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("question"), str):
        return None
    citations = value.get("citations", [])
    gate = value.get("gate", {})
    if not isinstance(citations, list) or not isinstance(gate, dict):
        return None
    return LogEntry(
        line=number,
        client=str(value.get("client", "-")),
        question=value["question"],
        citations=tuple(str(c) for c in citations),
        gate=gate,
        error=str(value.get("error", "") or ""),
        time=str(value.get("time", "")),
        question_sha256=str(value.get("question_sha256", ""))[:16],
    )


# -- state-changing helpers (only through run.action) --------------------------------------


def set_flags(system: FocusSystem, changes: dict[str, bool]) -> dict[str, Any]:
    """Set feature flags through the API's admin endpoint; returns what changed."""
    before = system.flags()
    response = system.live.request("/admin/flags", method="POST", role="admin", body=changes)
    if response.status != 200:
        raise RuntimeError(f"POST /admin/flags answered {response.status}: {response.body[:200]!r}")
    after = system.flags()
    return {
        "changed": {k: [before.get(k), after.get(k)] for k in sorted(changes)},
        "previous": {k: before.get(k) for k in sorted(changes)},
    }


def flags_undo(previous: dict[str, Any]) -> dict[str, Any]:
    """The undo record of a `set_flags` change (previous values; absent -> default)."""
    return {"op": "ai_focus.restore_flags", "args": {"previous": previous}}


@undoable("ai_focus.restore_flags")
def _restore_flags(target: Target, previous: dict[str, Any]) -> dict[str, Any]:
    system = FocusSystem.from_target(target)
    if system is None:
        raise TargetError(f"target {target.path} has no live section")
    values = {k: bool(v) for k, v in previous.items() if v is not None}
    if not values:
        return {"restored": {}}
    result = set_flags(system, values)
    return {"restored": values, "changed": result["changed"]}


def index_bytes(index: dict[str, Any]) -> bytes:
    """The bytes `Live.write_state` writes for an index (sorted keys, indent 2)."""
    return (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()


def write_index(system: FocusSystem, index: dict[str, Any]) -> dict[str, Any]:
    """Write the retrieval index through Live.write_state; returns both hashes."""
    before = system.index_bytes()
    system.live.write_state(INDEX_FILE, index)
    return {
        "previous_sha256": None if before is None else hashlib.sha256(before).hexdigest(),
        "written_sha256": hashlib.sha256(system.index_bytes() or b"").hexdigest(),
        "docs": sorted(index.get("docs", {})),
        "weights": index.get("weights"),
    }


def index_undo(previous: bytes | None) -> dict[str, Any]:
    """Undo record of `write_index`: the exact previous bytes (None: there was no file)."""
    return {
        "op": "ai_focus.restore_index",
        "args": {
            "previous_b64": None if previous is None else base64.b64encode(previous).decode(),
            "previous_sha256": None if previous is None else hashlib.sha256(previous).hexdigest(),
        },
    }


@undoable("ai_focus.restore_index")
def _restore_index(
    target: Target, previous_b64: str | None, previous_sha256: str | None = None
) -> dict[str, Any]:
    system = FocusSystem.from_target(target)
    if system is None:
        raise TargetError(f"target {target.path} has no live section")
    path = system.index_path()
    if previous_b64 is None:
        path.unlink(missing_ok=True)
        return {"restored": "absent (the index did not exist before)"}
    data = base64.b64decode(previous_b64)
    if previous_sha256 and hashlib.sha256(data).hexdigest() != previous_sha256:
        raise ValueError("the recorded previous index does not match its sha256: not restored")
    replace_atomic(path, data)
    return {"restored_sha256": hashlib.sha256(data).hexdigest()}
