"""A Focus Mode system as the ai runbooks see it: the target's `focus` section, through `Service`.

`FocusSystem.from_target(target)` reads the `focus` section (None when the target has
none) and the reference files it names (`checks/ai/reference.py`: evaluation set, citation
policy, gate policy; a file not named is `Missing`, and what depends on it HOLDs). It
reaches the running system only through `checks.common.service.Service`, so every
connection is logged into the evidence and remote hosts need `remote.allow`:

- `ask`: POST {"question": ...} to `focus.url` (the Focus-Mode-shaped protocol: a JSON
  reply with `answer`, `citations` [ids], optionally `gate` {decision, matched} and
  `error`; 200 answered, 4xx refused, 503 unavailable), as the probe client
  (`User-Agent: kfm-runbook/ai-probe`, `X-Forwarded-For: kfm-runbook-probe`) so the
  runbooks' own traffic is told apart in the decision log;
- `health`: GET `focus.health_url` (optional; `focus.health_check` names the component of
  the reply's `checks` object that reports retrieval);
- `catalog_ids`: GET `focus.catalog_url` (optional): the ids citations may resolve to;
- `read_log`: `focus.decision_log` {path, format: jsonl}, read defensively (a malformed
  line is counted, never raised; a link is never followed).

State changes go through the target's admin interface only (`Service.admin`): feature
flags by the names `focus.flags` maps (`enabled`, `citations_required`,
`withhold_uncited`, `input_gate`) with op `set_flags`, the index rebuild with op
`focus.rebuild_op`. When the target names no interface (or no flag name) the step is a
manual action with the exact instruction (`manual_instruction`). Each applied change has
a registered undo (`ai_focus.restore_flags`, `ai_focus.restore_index`) that goes through
the same interface.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._fs import open_regular
from ...errors import TargetError
from ...target import Target
from .. import undoable
from ..common.service import Response, Service
from . import reference as ref

PROBE_CLIENT = "kfm-runbook-probe"
PROBE_AGENT = "kfm-runbook/ai-probe"
LOG_TAIL_BYTES = 4 << 20  # read at most the last 4 MiB of the decision log
LOG_FORMATS = ("jsonl",)
FLAG_ROLES = {
    "enabled": "Focus Mode on/off",
    "citations_required": "answers must cite the data they rest on",
    "withhold_uncited": "the policy gate withholds uncited answers",
    "input_gate": "the input gate blocks what its patterns match",
}
REFUSED = frozenset({400, 403, 422})


@dataclass(frozen=True)
class Answer:
    """One question asked through `focus.url`, and what came back."""

    label: str
    question: str
    status: int  # 0: the system could not be reached
    citations: tuple[str, ...] = ()
    gate: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    text: str = ""
    abstained: bool = False  # the answer is one of the citation policy's abstentions

    @property
    def answered(self) -> bool:
        return self.status == 200

    @property
    def withheld_uncited(self) -> bool:
        """Refused by the citation policy gate (an uncited answer withheld)."""
        return self.status in REFUSED and "citation" in self.error.lower()

    @property
    def blocked_by_gate(self) -> bool:
        if self.gate.get("decision") == "block":
            return True
        return not self.gate and self.status in REFUSED and not self.withheld_uncited

    @property
    def disabled(self) -> bool:
        return self.status == 503 and "disabled" in self.error.lower()

    @property
    def index_unavailable(self) -> bool:
        """503 for any reason but "disabled": retrieval cannot serve."""
        return self.status == 503 and not self.disabled

    @property
    def gate_decision(self) -> str | None:
        """What the input gate decided: reported by the system, or implied by the reply."""
        decision = self.gate.get("decision")
        if isinstance(decision, str) and decision:
            return decision
        if self.blocked_by_gate:
            return "block"
        if self.answered or self.withheld_uncited:
            return "allow"
        return None

    @property
    def outcome(self) -> str:
        """A short, stable word for tables: answered / blocked / withheld / ... ."""
        if self.status == 0:
            return "unreachable"
        if self.answered:
            return "abstained" if self.abstained else "answered"
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
            "gate": self.gate_decision or "-",
        }


@dataclass(frozen=True)
class LogEntry:
    """One Focus Mode decision from the decision log."""

    line: int
    client: str
    question: str
    citations: tuple[str, ...]
    gate: dict[str, Any]
    error: str
    time: str
    question_sha256: str = ""
    answer: str | None = None  # None: the log does not carry the answer text
    agent: str = ""

    @property
    def probe(self) -> bool:
        return self.client == PROBE_CLIENT or self.agent == PROBE_AGENT

    @property
    def answered(self) -> bool:
        """Logged without an error: the client got an answer."""
        return not self.error


@dataclass(frozen=True)
class LogSample:
    entries: list[LogEntry]
    malformed: int
    missing: bool
    truncated: bool


@dataclass(frozen=True)
class FocusSystem:
    svc: Service
    target_path: Path
    url: str
    spec: dict[str, Any]
    eval_set: ref.EvalSet | ref.Missing
    citation_policy: ref.CitationPolicy | ref.Missing
    gate_policy: ref.GatePolicy | ref.Missing

    @classmethod
    def from_target(cls, target: Target) -> FocusSystem | None:
        """The target's Focus Mode, or None when the target has no `focus` section.

        A named reference file that is missing or malformed is bad input (TargetError).
        """
        svc = Service.from_target(target)
        spec = svc.section("focus")
        if not spec:
            return None
        url = svc.url("focus", "url")
        return cls(
            svc,
            target.path,
            url,
            spec,
            _reference(svc, "eval_set", ref.load_eval_set, "the questions and expected citations"),
            _reference(
                svc, "citation_policy", ref.load_citation_policy, "what citations are required"
            ),
            _reference(svc, "gate_policy", ref.load_gate_policy, "what the input gate must block"),
        )

    # -- the reference ----------------------------------------------------------------

    @property
    def questions(self) -> list[ref.EvalItem]:
        return list(self.eval_set.items) if isinstance(self.eval_set, ref.EvalSet) else []

    def missing(self, *names: str) -> list[ref.Missing]:
        """The named references (eval_set, citation_policy, gate_policy) the target lacks."""
        values = [getattr(self, name) for name in names]
        return [v for v in values if isinstance(v, ref.Missing)]

    # -- asking the running system --------------------------------------------------------

    def ask(self, label: str, question: str, retries: int = 3) -> Answer:
        """POST one question as the probe client (429: wait and retry)."""
        headers = {"X-Forwarded-For": PROBE_CLIENT, "User-Agent": PROBE_AGENT}
        role = self.spec.get("role")
        for attempt in range(retries + 1):
            try:
                response = self._request(
                    self.url,
                    method="POST",
                    role=str(role) if role else None,
                    body={"question": question},
                    headers=headers,
                )
            except (TargetError, OSError) as exc:
                return Answer(label, question, 0, error=f"{type(exc).__name__}: {exc}"[:200])
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
        text = str(body.get("answer", "") or "")
        policy = self.citation_policy
        return Answer(
            label,
            question,
            response.status,
            tuple(str(c) for c in citations) if isinstance(citations, list) else (),
            gate if isinstance(gate, dict) else {},
            str(body.get("error", "") or ""),
            text,
            isinstance(policy, ref.CitationPolicy) and policy.abstained(text),
        )

    def _request(self, url: str, **options: Any) -> Response:
        """One request to a full URL of the focus section (load_target checked them)."""
        return self.svc.request(url, base="focus", **options)

    def reachable(self) -> str | None:
        """Why Focus Mode cannot be asked (None when `focus.url` answers at all)."""
        answer = self.ask("reachability", "ping", retries=1)
        if answer.status == 0:
            return f"Focus Mode at {self.url} does not answer: {answer.error}"
        return None

    def health(self) -> tuple[int, dict[str, Any]] | None:
        """GET focus.health_url: (status, body), (0, {}) unreachable; None when not named."""
        url = self.spec.get("health_url")
        if not isinstance(url, str) or not url:
            return None
        try:
            response = self._request(url, timeout=10)
            body = response.json()
        except (TargetError, OSError, ValueError):
            return 0, {}
        return response.status, body if isinstance(body, dict) else {}

    @property
    def health_check(self) -> str | None:
        value = self.spec.get("health_check")
        return str(value) if isinstance(value, str) and value else None

    def catalog_ids(self) -> tuple[frozenset[str] | None, str]:
        """(ids the catalog serves, where from); None when not named or unreadable."""
        url = self.spec.get("catalog_url")
        if not isinstance(url, str) or not url:
            return None, "no focus.catalog_url in the target"
        role = self.spec.get("catalog_role")
        try:
            response = self._request(url, role=str(role) if role else None)
            value = response.json() if response.status == 200 else None
        except (TargetError, OSError, ValueError) as exc:
            return None, f"{url}: {type(exc).__name__}"
        if value is None:
            return None, f"{url} answered HTTP {response.status}"
        items = value
        if isinstance(value, dict):
            items = value.get("items", value.get("features"))
        if not isinstance(items, list):
            return None, f"{url}: no list of items (expected items: [...] or features: [...])"
        ids = {
            str(item.get("id")) if isinstance(item, dict) else str(item)
            for item in items
            if (isinstance(item, dict) and item.get("id") is not None) or isinstance(item, str)
        }
        return frozenset(ids), url

    # -- the decision log ------------------------------------------------------------------

    def log_path(self) -> Path | None:
        value = self.spec.get("decision_log")
        path = value.get("path") if isinstance(value, dict) else value
        if not isinstance(path, str) or not path:
            return None
        fmt = value.get("format", "jsonl") if isinstance(value, dict) else "jsonl"
        if fmt not in LOG_FORMATS:
            raise TargetError(
                f"target {self.target_path}: focus.decision_log.format {fmt!r} is not one of "
                f"{', '.join(LOG_FORMATS)}"
            )
        return (self.svc.target.base / Path(path).expanduser()).resolve()

    def log_size(self) -> int:
        path = self.log_path()
        try:
            return 0 if path is None else path.stat().st_size
        except OSError:
            return 0

    def read_log(self, since: int = 0, last: int | None = None) -> LogSample | None:
        """Decision-log entries (None when the target names no decision log)."""
        path = self.log_path()
        return None if path is None else read_log(path, since=since, last=last)

    # -- acting through the admin interface -----------------------------------------------

    def flag_name(self, role: str) -> str | None:
        flags = self.spec.get("flags")
        name = flags.get(role) if isinstance(flags, dict) else None
        return str(name) if isinstance(name, str) and name else None

    def interface(self, op: str) -> str | None:
        """How `op` reaches the system ("POST admin.flags_url", "<command> <op>"), or None."""
        admin = self.svc.section("admin")
        command = admin.get("command")
        if op == "set_flags" and isinstance(admin.get("flags_url"), str):
            return "POST admin.flags_url"  # the URL is in the target (its port is volatile)
        if isinstance(command, list) and command:
            return " ".join(str(part) for part in command) + f" {op}"
        return None

    def flag_step(self, role: str, value: bool) -> tuple[dict[str, bool], str] | None:
        """({flag: value}, how) when the change can be applied; None: manual."""
        name = self.flag_name(role)
        how = self.interface("set_flags")
        if name is None or how is None:
            return None
        return {name: value}, f"{how} {{{name!r}: {str(value).lower()}}}".replace("'", '"')

    def set_flags(self, changes: dict[str, bool]) -> dict[str, Any]:
        """Set flags through the admin interface (op set_flags); returns its reply."""
        return {"set": changes, "reply": self.svc.admin("set_flags", dict(changes))}

    @property
    def rebuild_op(self) -> str | None:
        value = self.spec.get("rebuild_op")
        return str(value) if isinstance(value, str) and value else None

    def rebuild_index(self) -> dict[str, Any]:
        """Rebuild the retrieval index through the admin interface (op focus.rebuild_op)."""
        if self.rebuild_op is None:
            raise TargetError(f"target {self.target_path} names no focus.rebuild_op")
        return self.svc.admin(self.rebuild_op, {})


def manual_instruction(role: str, value: bool, system: FocusSystem) -> str:
    """The exact instruction for a human when the change cannot be applied from here."""
    name = system.flag_name(role)
    what = FLAG_ROLES[role]
    state = "on" if value else "off"
    if name is None:
        return (
            f"Turn {state} the Focus Mode setting for: {what} (the target maps no flag for "
            f"focus.flags.{role}), then re-run this runbook to verify"
        )
    return (
        f"Set Focus Mode flag {name} = {str(value).lower()} ({what}) in the system's admin "
        "console or configuration (the target names no admin interface), then re-run "
        "this runbook to verify"
    )


def _reference(svc: Service, key: str, loader: Any, why: str) -> Any:
    path = svc.path("focus", key)
    if path is None:
        return ref.Missing(f"focus.{key}", why)
    return loader(path)


def read_log(path: Path, since: int = 0, last: int | None = None) -> LogSample:
    """Parse a JSON-lines decision log defensively (bad lines are counted, not raised)."""
    import json

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
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            value = None
        entry = _entry(number, value)
        if entry is None:
            malformed += 1
        else:
            entries.append(entry)
    if last is not None and len(entries) > last:
        entries, truncated = entries[-last:], True
    return LogSample(entries, malformed, False, truncated)


def _entry(number: int, value: Any) -> LogEntry | None:
    if not isinstance(value, dict) or not isinstance(value.get("question"), str):
        return None
    citations = value.get("citations", [])
    gate = value.get("gate", {})
    answer = value.get("answer")
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
        answer=answer if isinstance(answer, str) else None,
        agent=str(value.get("user_agent", "") or ""),
    )


# -- undo operations (persisted names: never renamed) ----------------------------------------


def flags_undo(previous: dict[str, bool]) -> dict[str, Any]:
    """The undo record of a flag change: the values the flags had before it."""
    return {"op": "ai_focus.restore_flags", "args": {"previous": previous}}


def _system(target: Target) -> FocusSystem:
    system = FocusSystem.from_target(target)
    if system is None:
        raise TargetError(f"target {target.path} has no focus section: nothing to restore")
    return system


@undoable("ai_focus.restore_flags")
def _restore_flags(target: Target, previous: dict[str, Any]) -> dict[str, Any]:
    values = {k: bool(v) for k, v in previous.items() if v is not None}
    if not values:
        return {"restored": {}}
    return {"restored": values, "reply": _system(target).svc.admin("set_flags", values)}


def index_undo(reply: dict[str, Any]) -> dict[str, Any] | None:
    """Undo of a rebuild, when the admin interface returned the previous index's bytes."""
    if not isinstance(reply, dict) or "previous_b64" not in reply:
        return None
    previous = reply["previous_b64"]
    if previous is not None and not isinstance(previous, str):
        return None
    return {
        "op": "ai_focus.restore_index",
        "args": {"previous_b64": previous, "previous_sha256": reply.get("previous_sha256")},
    }


@undoable("ai_focus.restore_index")
def _restore_index(
    target: Target, previous_b64: str | None, previous_sha256: str | None = None
) -> dict[str, Any]:
    """Put the previous index back through the admin op `focus_restore_index`."""
    import base64

    if previous_b64 is not None and previous_sha256:
        digest = hashlib.sha256(base64.b64decode(previous_b64)).hexdigest()
        if digest != previous_sha256:
            raise ValueError("the recorded previous index does not match its sha256: not restored")
    reply = _system(target).svc.admin(
        "focus_restore_index", {"previous_b64": previous_b64, "previous_sha256": previous_sha256}
    )
    return {"restored": reply}
