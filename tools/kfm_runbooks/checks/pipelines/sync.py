"""Conditional fetches (smart_sync run receipts): the contract, and loops that never settle.

Each run receipt is checked against KFM's `run_receipt` JSON Schema (when the target names
it), and an invalid fixture's `*.expected_error.txt` matcher must be reproduced by one of
the schema errors. Receipts of one source are then linked through
`smart_sync.prior_run_receipt_ref` and read as a history of conditional fetches:

- SYNC_REMATERIALIZED_UNCHANGED  HTTP 200 + materialize although the content digest equals
                                 the prior one (the bytes did not change)
- SYNC_VALIDATORS_NOT_PERSISTED  a request did not send the validators the previous
                                 response returned (so the server can never answer 304)
- SYNC_PRIOR_BINDING_BROKEN      prior_content_digest is not the previous run's content
- SYNC_NEVER_SETTLES             the last `loop_window` linked runs were all HTTP 200 for
                                 unchanged content: the fetch loops instead of settling

A source's sync can be held (containment) and switched to content-digest change
detection (recovery) in the sync control file; both are reversible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import TargetError
from ...target import Target
from ...vocab import Verdict
from .. import BLOCKING, HOLD, INFO, Finding, undoable
from ..common import holding
from ..common import matchers as expected_error
from .base import (
    FileReport,
    SchemaValidator,
    json_files,
    optional_validator,
    parse_instant,
    read_json,
    rel,
    write_json,
)

SECTION = "pipelines_sync"
CONTRACT_CODES = frozenset(
    {"SCHEMA_INVALID", "EXPECTED_ERROR_NOT_REPRODUCED", "EXPECTED_ERROR_UNPARSEABLE"}
)
LOOP_CODES = frozenset(
    {
        "SYNC_REMATERIALIZED_UNCHANGED",
        "SYNC_VALIDATORS_NOT_PERSISTED",
        "SYNC_PRIOR_BINDING_BROKEN",
        "SYNC_NEVER_SETTLES",
    }
)
DIGEST_GATE = "content_digest"


@dataclass(frozen=True)
class SyncConfig:
    base: Path
    receipts: tuple[Path, ...]
    schema: SchemaValidator | None
    control: Path | None
    loop_window: int = 3

    @classmethod
    def from_target(cls, target: Target) -> SyncConfig:
        section = target.section(SECTION)
        receipts = tuple(target.resolve_many(SECTION, "receipts"))
        if not receipts:
            raise TargetError(f"target {target.path}: '{SECTION}.receipts' is required")
        window = section.get("loop_window", 3)
        if not isinstance(window, int) or isinstance(window, bool) or window < 2:
            raise TargetError(
                f"target {target.path}: '{SECTION}.loop_window' must be an integer >= 2"
            )
        return cls(
            base=target.base,
            receipts=receipts,
            schema=optional_validator(target, SECTION, "schema"),
            control=target.resolve(SECTION, "control", required=False),
            loop_window=window,
        )


@dataclass
class Receipt:
    """A schema-checked receipt with a smart_sync profile, as one fetch of one source."""

    file: str
    run_id: str
    source: str
    fetch_time: str
    status: int
    decision: str
    reason: str
    prior_ref: str
    prior_digest: str
    digest: str | None
    request: dict[str, Any]
    response: dict[str, Any] | None

    @property
    def content(self) -> str:
        """The content this run leaves behind: new digest, or the prior one on 304."""
        return self.digest or self.prior_digest

    @property
    def unsettled(self) -> bool:
        """A full 200 download although the content did not change."""
        return self.status == 200 and self.content == self.prior_digest

    @property
    def kind(self) -> str:
        if self.status == 304:
            return "304 no_op"
        if self.decision == "materialize":
            return "200 materialize (unchanged)" if self.unsettled else "200 materialize"
        return "200 no_op (validator drift)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "run_id": self.run_id,
            "source": self.source,
            "fetch_time": self.fetch_time,
            "kind": self.kind,
            "etag_sent": self.request.get("etag"),
            "etag_received": (self.response or {}).get("etag"),
        }


def _receipt(report: FileReport, value: dict[str, Any]) -> Receipt | None:
    sync = value.get("smart_sync")
    if not isinstance(sync, dict):
        return None
    validators = (
        sync.get("http_validators") if isinstance(sync.get("http_validators"), dict) else {}
    )
    assert isinstance(validators, dict)
    request, response = validators.get("request"), validators.get("response")
    fields = (
        value.get("run_id"),
        sync.get("source_url"),
        sync.get("fetch_time"),
        sync.get("prior_run_receipt_ref"),
        sync.get("prior_content_digest"),
    )
    if (
        not all(isinstance(v, str) for v in fields)
        or sync.get("http_status") not in (200, 304)
        or not isinstance(request, dict)
        or parse_instant(sync.get("fetch_time")) is None
    ):
        report.add(
            "SYNC_PROFILE_UNREADABLE",
            "/smart_sync",
            "smart_sync profile incomplete: fetch history unverifiable",
            HOLD,
        )
        return None
    return Receipt(
        file=report.file,
        run_id=str(value["run_id"]),
        source=str(sync["source_url"]),
        fetch_time=str(sync["fetch_time"]),
        status=int(sync["http_status"]),
        decision=str(sync.get("decision")),
        reason=str(sync.get("reason")),
        prior_ref=str(sync["prior_run_receipt_ref"]),
        prior_digest=str(sync["prior_content_digest"]),
        digest=sync.get("content_digest") if isinstance(sync.get("content_digest"), str) else None,
        request=request,
        response=response if isinstance(response, dict) else None,
    )


def scan_receipt(path: Path, config: SyncConfig) -> tuple[FileReport, Receipt | None]:
    report = FileReport(rel(path, config.base))
    value, code = read_json(path, max_bytes=1_048_576)
    if value is None:
        report.add(code or "INPUT_READ_ERROR", message="receipt unreadable")
        return report, None
    matcher, matcher_code = expected_error.beside(path)
    if matcher_code:
        report.add(matcher_code, message="expected-error file beside the receipt is unusable")
    if config.schema is None:
        report.add("RECEIPT_SCHEMA_NOT_CONFIGURED", message="contract unchecked", severity=INFO)
        return report, _receipt(report, value)
    errors = config.schema.errors(value)
    for error in errors:
        report.add("SCHEMA_INVALID", error.pointer, f"{error.keyword}: {error.message[:140]}")
    if matcher is not None:
        matched = matcher.matched_by(errors)
        report.details.update(expected_error=matcher.text, expected_error_matched=matched)
        if not matched:
            report.add(
                "EXPECTED_ERROR_NOT_REPRODUCED",
                matcher.field or "/",
                f"expected {matcher.describe}",
            )
    return report, (None if errors else _receipt(report, value))


# --- fetch histories -------------------------------------------------------------------


@dataclass
class SourceHistory:
    source: str
    runs: list[Receipt] = field(default_factory=list)  # linked, oldest first
    held_by: str | None = None
    change_detection: str | None = None

    @property
    def unsettled_tail(self) -> int:
        count = 0
        for run in reversed(self.runs):
            if not run.unsettled:
                break
            count += 1
        return count

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "runs": len(self.runs),
            "unsettled_tail": self.unsettled_tail,
            "etags_seen": len({(r.response or {}).get("etag") for r in self.runs if r.response}),
            "held_by": self.held_by,
            "change_detection": self.change_detection,
        }


def _linked(receipts: list[Receipt]) -> list[Receipt]:
    """The longest prior-linked chain among one source's receipts (by fetch time)."""
    by_id = {r.run_id: r for r in receipts}
    best: list[Receipt] = []
    for tail in sorted(receipts, key=lambda r: (r.fetch_time, r.run_id)):
        chain, seen = [tail], {tail.run_id}
        while chain[0].prior_ref in by_id and chain[0].prior_ref not in seen:
            chain.insert(0, by_id[chain[0].prior_ref])
            seen.add(chain[0].run_id)
        if len(chain) > len(best):
            best = chain
    return best


def history_findings(history: SourceHistory, window: int) -> list[Finding]:
    found: list[Finding] = []

    def add(code: str, run: Receipt, message: str) -> None:
        name = run.file.rsplit("/", 1)[-1]
        found.append(Finding(code, history.source, "/smart_sync", BLOCKING, f"{name}: {message}"))

    for index, run in enumerate(history.runs):
        if run.status == 200 and run.decision == "materialize" and run.digest == run.prior_digest:
            add(
                "SYNC_REMATERIALIZED_UNCHANGED",
                run,
                f"{run.run_id}: re-materialized identical content {run.prior_digest[7:19]}…",
            )
        if index == 0:
            continue
        prev = history.runs[index - 1]
        if run.prior_digest != prev.content:
            add(
                "SYNC_PRIOR_BINDING_BROKEN",
                run,
                f"{run.run_id}: prior digest is not {prev.run_id}'s content",
            )
        if prev.response is not None:
            sent = {k: run.request.get(k) for k in ("etag", "last_modified")}
            got = {k: prev.response.get(k) for k in ("etag", "last_modified")}
            if sent != got:
                add(
                    "SYNC_VALIDATORS_NOT_PERSISTED",
                    run,
                    f"{run.run_id}: sent {sent['etag']!r}, last response was {got['etag']!r}",
                )
    tail = history.unsettled_tail
    if tail >= window:
        etags = sorted({str((r.response or {}).get("etag")) for r in history.runs[-tail:]})
        add(
            "SYNC_NEVER_SETTLES",
            history.runs[-1],
            f"{tail} consecutive HTTP 200 for unchanged content; ETags seen: {', '.join(etags)}",
        )
    if history.held_by:
        found = [
            Finding(
                f.code,
                f.subject,
                f.field,
                INFO,
                f"{f.message} — contained: sync held by {history.held_by}",
            )
            for f in found
        ]
    return found


def load_control(config: SyncConfig) -> dict[str, Any]:
    if config.control is None:
        return {}
    value, _ = read_json(config.control)
    sources = value.get("sources") if value else None
    return sources if isinstance(sources, dict) else {}


@dataclass
class SyncScan:
    receipts: list[FileReport]
    histories: list[SourceHistory]
    loop_findings: list[Finding]

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.receipts for f in r.findings] + self.loop_findings

    def blocking(self, codes: frozenset[str]) -> list[Finding]:
        return [f for f in self.findings if f.severity == BLOCKING and (f.code in codes)]

    def contract_failures(self) -> list[FileReport]:
        return [r for r in self.receipts if r.outcome in (Verdict.FAIL, Verdict.ERROR)]

    def looping(self) -> list[SourceHistory]:
        """Sources whose history shows a loop (held or not)."""
        looped = {f.subject for f in self.loop_findings}
        return [h for h in self.histories if h.source in looped]

    def unheld_loops(self) -> list[SourceHistory]:
        return [h for h in self.looping() if not h.held_by]


def scan(config: SyncConfig) -> SyncScan:
    reports, receipts = [], []
    for path in json_files(config.receipts):
        report, receipt = scan_receipt(path, config)
        reports.append(report)
        if receipt is not None:
            receipts.append(receipt)
    control = load_control(config)
    histories, found = [], []
    for source in sorted({r.source for r in receipts}):
        entry = control.get(source) if isinstance(control.get(source), dict) else {}
        assert isinstance(entry, dict)
        hold = entry.get("hold")
        history = SourceHistory(
            source,
            _linked([r for r in receipts if r.source == source]),
            held_by=str(hold.get("by")) if isinstance(hold, dict) else None,
            change_detection=str(entry.get("change_detection") or "etag"),
        )
        histories.append(history)
        found += history_findings(history, config.loop_window)
    return SyncScan(reports, histories, sorted(found))


# --- reversible control changes --------------------------------------------------------


def _control_doc(config: SyncConfig) -> tuple[Path, dict[str, Any]]:
    if config.control is None:
        raise TargetError(f"'{SECTION}.control' is not configured: nowhere to hold a sync")
    value, code = read_json(config.control)
    if value is None and code != "INPUT_NOT_FILE":
        raise TargetError(f"sync control file {config.control} unusable ({code})")
    doc = value or {}
    if not isinstance(doc.setdefault("sources", {}), dict):
        raise TargetError(f"sync control file {config.control}: 'sources' is not a mapping")
    return config.control, doc


def hold_sync(config: SyncConfig, source: str, *, incident: str, reason: str) -> dict[str, Any]:
    """Stop fetching `source` (the fetcher skips held sources). Idempotent."""
    path, doc = _control_doc(config)
    entry = doc["sources"].setdefault(source, {})
    if not holding.place(entry, "hold", incident, reason):
        return {"source": source, "held": True, "already": True}
    write_json(path, doc)
    return {"source": source, "held": True, "already": False}


def release_sync(config: SyncConfig, source: str) -> dict[str, Any]:
    """Undo `hold_sync`. Safe to run twice."""
    path, doc = _control_doc(config)
    entry = doc["sources"].get(source)
    if not isinstance(entry, dict) or not holding.lift(entry, "hold", keep_key=True):
        return {"source": source, "released": False, "reason": "not held"}
    write_json(path, doc)
    return {"source": source, "released": True}


def set_change_detection(config: SyncConfig, source: str, mode: str) -> dict[str, Any]:
    """Set how the fetcher decides "changed" (etag | content_digest); returns the old mode."""
    if mode not in ("etag", DIGEST_GATE):
        raise ValueError(f"change detection must be etag or {DIGEST_GATE}, not {mode!r}")
    path, doc = _control_doc(config)
    entry = doc["sources"].setdefault(source, {})
    previous = str(entry.get("change_detection") or "etag")
    if previous == mode:
        return {"source": source, "changed": False, "mode": mode, "previous": previous}
    entry["change_detection"] = mode
    write_json(path, doc)
    return {"source": source, "changed": True, "mode": mode, "previous": previous}


@undoable("pipelines.release_sync")
def _undo_hold(target: Target, source: str) -> dict[str, Any]:
    return release_sync(SyncConfig.from_target(target), source)


@undoable("pipelines.set_change_detection")
def _undo_gate(target: Target, source: str, mode: str) -> dict[str, Any]:
    return set_change_detection(SyncConfig.from_target(target), source, mode)
