"""Watchers: registry integrity (KFM's watcher-registry rules), watcher gate packets, and
liveness (heartbeats, stuck runs, ingestion lag) from the watchers' runtime state.

Registry rules follow KFM's `validate_watcher_registry` contract and its finding codes:
closed JSON Schema first (SCHEMA_INVALID), then, only on a schema-valid registry, the
semantic rules (REGISTRY_SPEC_HASH_MISMATCH, WATCHER_ID_DUPLICATE, SPEC_PATH_DUPLICATE,
SPEC_FILE_HASH_MISMATCH, ...): every finding makes the registry's outcome ERROR. Gate
packets are checked by `pipelines_gate` (KFM's `validate_watcher_gate_packet` contract).

Runtime state (`state:` in the target) is a JSON file kept by the scheduler::

    {"watchers": {"<watcher_id>": {
        "source_id": "...", "last_success": "<UTC>", "last_heartbeat": "<UTC>",
        "run": {"run_id": "...", "started_at": "<UTC>", "status": "running"} | null,
        "lag_budget": "PT6H", "lag_samples": [{"at": "<UTC>", "watermark": "<UTC>"}],
        "paused": {"by": "INC-...", "at": "<UTC>", "reason": "..."} | null,
        "queue": [...], "abandoned_runs": [...]}}}

Pausing a watcher and requeueing its stuck run are the reversible state changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._time import now_iso
from ...errors import TargetError
from ...target import Target
from ...vocab import Verdict
from .. import BLOCKING, HOLD, INFO, Finding, undoable
from ..common.files import sha256_tagged
from ..common.jcs import spec_hash_matches
from .base import (
    READ_CODES,
    FileReport,
    SchemaValidator,
    as_of,
    contained,
    hours,
    json_files,
    optional_validator,
    parse_duration,
    parse_instant,
    read_json,
    rel,
    write_json,
)
from .gate import scan_packet

SECTION = "pipelines_watchers"
MAX_SPEC_BYTES = 4 * 1024 * 1024
REGISTRY_CODES = frozenset(
    {
        "SCHEMA_INVALID",
        "REGISTRY_SPEC_HASH_MISMATCH",
        "WATCHERS_NOT_CANONICAL",
        "WATCHER_ID_DUPLICATE",
        "CANONICAL_ID_DUPLICATE",
        "SPEC_PATH_DUPLICATE",
        "CAPABILITIES_NOT_CANONICAL",
        "OUTPUTS_NOT_CANONICAL",
        "SPEC_PATH_INVALID",
        "SPEC_FILE_MISSING",
        "SPEC_FILE_TOO_LARGE",
        "SPEC_FILE_UNREADABLE",
        "SPEC_FILE_HASH_MISMATCH",
        "WATCHER_AUTHORITY_OVERREACH",
    }
)
LIVENESS_CODES = frozenset(
    {"WATCHER_RUN_STUCK", "WATCHER_HEARTBEAT_STALE", "WATCHER_OVERDUE", "INGESTION_LAG_OVER_BUDGET"}
)


@dataclass(frozen=True)
class WatcherConfig:
    """The target's `pipelines_watchers` section."""

    base: Path
    repo_root: Path
    registries: tuple[Path, ...]
    registry_schema: SchemaValidator | None
    gate_packets: tuple[Path, ...]
    gate_profile: dict[str, Any] | None
    state: Path | None
    as_of: dt.datetime
    grace: float = 2.0

    @classmethod
    def from_target(cls, target: Target) -> WatcherConfig:
        section = target.section(SECTION)
        registries = tuple(target.resolve_many(SECTION, "registries"))
        if not registries:
            raise TargetError(f"target {target.path}: '{SECTION}.registries' is required")
        profile = section.get("gate_profile")
        if profile is not None and not isinstance(profile, dict):
            raise TargetError(f"target {target.path}: '{SECTION}.gate_profile' must be a mapping")
        grace = section.get("grace", 2.0)
        if not isinstance(grace, int | float) or isinstance(grace, bool) or grace < 1:
            raise TargetError(f"target {target.path}: '{SECTION}.grace' must be a number >= 1")
        return cls(
            base=target.base,
            repo_root=target.resolve(SECTION, "repo_root", required=False) or target.base,
            registries=registries,
            registry_schema=optional_validator(target, SECTION, "registry_schema"),
            gate_packets=tuple(target.resolve_many(SECTION, "gate_packets")),
            gate_profile=profile,
            state=target.resolve(SECTION, "state", required=False),
            as_of=as_of(target, SECTION),
            grace=float(grace),
        )


# --- registry --------------------------------------------------------------------------


@dataclass
class RegistryReport(FileReport):
    watchers: list[dict[str, Any]] = field(default_factory=list)


def _canonical_outputs(outputs: list[Any]) -> list[Any]:
    def key(item: Any) -> tuple[str, str, str, str]:
        if not isinstance(item, dict):
            return ("", "", "", "")
        return tuple(  # type: ignore[return-value]
            str(item.get(k, ""))
            for k in ("output_type", "target_zone", "contract_ref", "schema_ref")
        )

    return sorted(outputs, key=key)


def _spec_binding(report: RegistryReport, watcher: dict[str, Any], base: str, root: Path) -> None:
    """The watcher's spec file must exist inside pipeline_specs/ with the pinned sha256."""
    raw = watcher.get("spec_path")
    if not isinstance(raw, str) or not raw.startswith("pipeline_specs/"):
        report.add(
            "SPEC_PATH_INVALID", f"{base}/spec_path", f"spec_path {raw!r} not under pipeline_specs/"
        )
        return
    path, code = contained(root, raw)
    if path is None:
        report.add("SPEC_PATH_INVALID", f"{base}/spec_path", f"spec_path {raw!r}: {code}")
        return
    try:
        if not path.is_file():
            report.add("SPEC_FILE_MISSING", f"{base}/spec_path", f"{raw} does not exist")
            return
        if path.stat().st_size > MAX_SPEC_BYTES:
            report.add("SPEC_FILE_TOO_LARGE", f"{base}/spec_path", f"{raw} is too large")
            return
        actual = sha256_tagged(path)
    except OSError:
        report.add("SPEC_FILE_UNREADABLE", f"{base}/spec_path", f"{raw} cannot be read")
        return
    pinned = watcher.get("spec_sha256")
    if pinned != actual:
        report.add(
            "SPEC_FILE_HASH_MISMATCH",
            f"{base}/spec_sha256",
            f"{raw}: sha256 {actual[7:19]}… != pinned {str(pinned)[7:19]}…",
        )


def registry_semantics(report: RegistryReport, value: dict[str, Any], root: Path) -> None:
    """KFM's semantic registry rules (run on schema-valid registries only)."""
    declared = value.get("spec_hash")
    subject = {key: item for key, item in value.items() if key != "spec_hash"}
    if isinstance(declared, str) and not spec_hash_matches(
        declared, subject, value.get("canonicalization_profile")
    ):
        report.add("REGISTRY_SPEC_HASH_MISMATCH", "/spec_hash", "registry spec_hash is stale")
    watchers = [w for w in value.get("watchers") or [] if isinstance(w, dict)]
    ids = [str(w.get("watcher_id")) for w in watchers]
    if ids != sorted(ids):
        report.add("WATCHERS_NOT_CANONICAL", "/watchers", "watchers not sorted by watcher_id")
    for key, code in (
        ("watcher_id", "WATCHER_ID_DUPLICATE"),
        ("canonical_id", "CANONICAL_ID_DUPLICATE"),
        ("spec_path", "SPEC_PATH_DUPLICATE"),
    ):
        values = [str(w.get(key)) for w in watchers]
        if len(values) != len(set(values)):
            report.add(code, "/watchers", f"duplicate {key}")
    for index, watcher in enumerate(watchers):
        base = f"/watchers/{index}"
        caps = watcher.get("capabilities")
        if isinstance(caps, list) and caps != sorted(set(map(str, caps))):
            report.add("CAPABILITIES_NOT_CANONICAL", f"{base}/capabilities")
        outputs = watcher.get("outputs")
        if isinstance(outputs, list) and outputs != _canonical_outputs(outputs):
            report.add("OUTPUTS_NOT_CANONICAL", f"{base}/outputs")
        _spec_binding(report, watcher, base, root)
        governance = watcher.get("governance")
        if isinstance(governance, dict) and any(
            governance.get(flag) is not False
            for flag in (
                "raw_admission_authorized",
                "promotion_authorized",
                "release_authorized",
                "publication_authorized",
            )
        ):
            report.add("WATCHER_AUTHORITY_OVERREACH", f"{base}/governance")


def scan_registry(path: Path, config: WatcherConfig) -> RegistryReport:
    report = RegistryReport(rel(path, config.base), error_codes=READ_CODES | REGISTRY_CODES)
    value, code = read_json(path)
    if value is None:
        report.add(code or "INPUT_READ_ERROR", message="registry unreadable")
        return report
    if config.registry_schema is not None:
        for error in config.registry_schema.errors(value):
            report.add("SCHEMA_INVALID", error.pointer, error.message[:160])
        if report.findings:
            return report
    else:
        report.add("REGISTRY_SCHEMA_NOT_CONFIGURED", message="semantic rules only", severity=INFO)
    registry_semantics(report, value, config.repo_root)
    report.watchers = [w for w in value.get("watchers") or [] if isinstance(w, dict)]
    report.details["watchers"] = len(report.watchers)
    return report


# --- liveness --------------------------------------------------------------------------


@dataclass
class WatcherStatus:
    """One watcher's liveness as of the evaluation instant."""

    watcher_id: str
    mode: str
    cadence_h: float | None = None
    source_id: str | None = None
    status: str = "ok"  # ok | manual | no-state | invalid-state | overdue | stuck | paused
    since_success_h: float | None = None
    heartbeat_age_h: float | None = None
    run_age_h: float | None = None
    lag_h: float | None = None
    lag_budget_h: float | None = None
    paused_by: str | None = None
    lag_series: list[tuple[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "lag_series"}
        out["lag_samples"] = len(self.lag_series)
        return out


def load_state(config: WatcherConfig) -> tuple[dict[str, Any], str | None]:
    if config.state is None:
        return {}, "WATCHER_STATE_NOT_CONFIGURED"
    value, code = read_json(config.state)
    if value is None:
        return {}, code
    watchers = value.get("watchers")
    return (watchers, None) if isinstance(watchers, dict) else ({}, "WATCHER_STATE_INVALID")


def _lag_series(
    entry: dict[str, Any], now: dt.datetime
) -> list[tuple[dt.datetime, dt.timedelta]] | None:
    """(instant, lag) per sample, ending with the lag now: now minus the newest watermark."""
    samples = entry.get("lag_samples") or []
    if not isinstance(samples, list):
        return None
    series, newest = [], None
    for sample in samples:
        at = parse_instant(sample.get("at")) if isinstance(sample, dict) else None
        mark = parse_instant(sample.get("watermark")) if isinstance(sample, dict) else None
        if at is None or mark is None or at > now:
            return None
        series.append((at, at - mark))
        newest = mark if newest is None else max(newest, mark)
    series.sort()
    if newest is not None and series[-1][0] < now:
        series.append((now, now - newest))
    return series


def _assess(
    status: WatcherStatus, entry: dict[str, Any], poll: dict[str, Any], config: WatcherConfig
) -> list[tuple[str, str, str]]:
    """(code, severity, message) for one scheduled watcher with a state entry."""
    cadence = parse_duration(poll.get("cadence"))
    if cadence is None:
        return [("WATCHER_CADENCE_INVALID", HOLD, f"cadence {poll.get('cadence')!r} unreadable")]
    allowed = cadence * config.grace
    status.cadence_h = hours(cadence)
    success, beat = (
        parse_instant(entry.get("last_success")),
        parse_instant(entry.get("last_heartbeat")),
    )
    series = _lag_series(entry, config.as_of)
    budget = parse_duration(entry.get("lag_budget")) if entry.get("lag_budget") else allowed
    if success is None or beat is None or series is None or budget is None:
        status.status = "invalid-state"
        return [
            ("WATCHER_STATE_INVALID", HOLD, "state timestamps unreadable: liveness unverifiable")
        ]
    status.source_id = str(entry.get("source_id") or "") or None
    status.since_success_h = hours(config.as_of - success)
    status.heartbeat_age_h = hours(config.as_of - beat)
    status.lag_budget_h = hours(budget)
    status.lag_series = [(at.strftime("%Y-%m-%dT%H:%MZ"), hours(lag)) for at, lag in series]
    if series:
        status.lag_h = status.lag_series[-1][1]
    found: list[tuple[str, str, str]] = []
    run = entry.get("run")
    if isinstance(run, dict) and run.get("status") == "running":
        started = parse_instant(run.get("started_at"))
        timeout_s = poll.get("timeout_seconds")
        timeout = (
            dt.timedelta(seconds=timeout_s)
            if isinstance(timeout_s, int) and not isinstance(timeout_s, bool) and timeout_s > 0
            else cadence
        )
        if started is None:
            found.append(("WATCHER_STATE_INVALID", HOLD, "running run without a start time"))
        elif config.as_of - started > timeout:
            status.run_age_h = hours(config.as_of - started)
            found.append(
                (
                    "WATCHER_RUN_STUCK",
                    BLOCKING,
                    f"run {run.get('run_id')} running {status.run_age_h} h "
                    f"(timeout {hours(timeout)} h)",
                )
            )
    if config.as_of - beat > allowed:
        found.append(
            (
                "WATCHER_HEARTBEAT_STALE",
                BLOCKING,
                f"last heartbeat {status.heartbeat_age_h} h ago (allowed {hours(allowed)} h)",
            )
        )
    if config.as_of - success > allowed:
        found.append(
            (
                "WATCHER_OVERDUE",
                BLOCKING,
                f"last success {status.since_success_h} h ago "
                f"(cadence {status.cadence_h} h × {config.grace:g})",
            )
        )
    if series and series[-1][1] > budget:
        found.append(
            (
                "INGESTION_LAG_OVER_BUDGET",
                BLOCKING,
                f"source {status.source_id} lags {status.lag_h} h (budget {status.lag_budget_h} h)",
            )
        )
    if any(severity == BLOCKING for _, severity, _ in found):
        status.status = "stuck" if status.run_age_h is not None else "overdue"
    return found


def liveness(
    config: WatcherConfig, registries: Iterable[RegistryReport]
) -> tuple[list[WatcherStatus], list[Finding]]:
    """Every watcher of every valid registry (first occurrence of an id), assessed."""
    state, state_code = load_state(config)
    statuses: list[WatcherStatus] = []
    findings: list[Finding] = []
    seen: set[str] = set()
    for report in registries:
        if report.outcome not in (Verdict.PASS,):
            continue
        for watcher in report.watchers:
            watcher_id = str(watcher.get("watcher_id"))
            if watcher_id in seen:
                continue
            seen.add(watcher_id)
            poll = watcher.get("poll") if isinstance(watcher.get("poll"), dict) else {}
            assert isinstance(poll, dict)
            status = WatcherStatus(watcher_id, str(poll.get("mode")))
            statuses.append(status)
            if poll.get("mode") != "SCHEDULED" or watcher.get("state") != "ACTIVE":
                status.status = "manual"
                findings.append(
                    Finding(
                        "WATCHER_NOT_SCHEDULED",
                        watcher_id,
                        "/poll",
                        INFO,
                        f"{poll.get('mode')} / {watcher.get('state')}: no schedule to fall behind",
                    )
                )
                continue
            entry = state.get(watcher_id)
            if not isinstance(entry, dict):
                status.status = "no-state"
                why = state_code or "no entry in the state file"
                findings.append(
                    Finding(
                        "WATCHER_STATE_MISSING",
                        watcher_id,
                        "/",
                        HOLD,
                        f"scheduled but no runtime state ({why}): unverifiable",
                    )
                )
                continue
            found = _assess(status, entry, poll, config)
            paused = entry.get("paused")
            if isinstance(paused, dict) and found:
                status.status, status.paused_by = "paused", str(paused.get("by"))
                found = [
                    (code, INFO, f"{message} — contained: paused by {status.paused_by}")
                    if severity == BLOCKING
                    else (code, severity, message)
                    for code, severity, message in found
                ]
            findings.extend(
                Finding(code, watcher_id, "/", severity, message)
                for code, severity, message in found
            )
    return statuses, sorted(findings)


# --- one pass --------------------------------------------------------------------------


@dataclass
class WatcherScan:
    registries: list[RegistryReport]
    packets: list[FileReport]
    watchers: list[WatcherStatus]
    liveness_findings: list[Finding]

    @property
    def findings(self) -> list[Finding]:
        out = [f for r in self.registries for f in r.findings]
        out += [f for p in self.packets for f in p.findings]
        return out + self.liveness_findings

    def blocking(self, codes: frozenset[str]) -> list[Finding]:
        return [f for f in self.findings if f.code in codes and f.severity == BLOCKING]

    def held(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == HOLD]

    def affected(self) -> list[str]:
        """Watchers with a blocking liveness finding (the ones to pause)."""
        return sorted({f.subject for f in self.blocking(LIVENESS_CODES)})

    def stuck(self) -> list[WatcherStatus]:
        """Watchers whose run is still marked running past its timeout (paused or not)."""
        return [s for s in self.watchers if s.run_age_h is not None]


def scan(config: WatcherConfig) -> WatcherScan:
    registries = [scan_registry(p, config) for p in json_files(config.registries)]
    packets = [
        scan_packet(p, config.base, config.gate_profile) for p in json_files(config.gate_packets)
    ]
    watchers, found = liveness(config, registries)
    return WatcherScan(registries, packets, watchers, found)


# --- reversible state changes ----------------------------------------------------------


def _state_doc(config: WatcherConfig) -> dict[str, Any]:
    if config.state is None:
        raise TargetError(f"'{SECTION}.state' is not configured: nothing to change")
    value, code = read_json(config.state)
    if value is None or not isinstance(value.get("watchers"), dict):
        raise TargetError(f"watcher state {config.state} unusable ({code or 'no watchers map'})")
    return value


def _entry(doc: dict[str, Any], watcher_id: str) -> dict[str, Any]:
    entry = doc["watchers"].get(watcher_id)
    if not isinstance(entry, dict):
        raise TargetError(f"watcher {watcher_id!r} has no state entry")
    return entry


def is_paused(config: WatcherConfig, watcher_id: str) -> bool:
    state, _ = load_state(config)
    entry = state.get(watcher_id)
    return isinstance(entry, dict) and isinstance(entry.get("paused"), dict)


def pause_watcher(
    config: WatcherConfig, watcher_id: str, *, incident: str, reason: str
) -> dict[str, Any]:
    """Stop the scheduler from starting `watcher_id` (state flag). Idempotent."""
    doc = _state_doc(config)
    entry = _entry(doc, watcher_id)
    if isinstance(entry.get("paused"), dict):
        return {"watcher_id": watcher_id, "paused": True, "already": True}
    entry["paused"] = {"by": incident, "at": now_iso(), "reason": reason}
    write_json(config.state, doc)  # type: ignore[arg-type]
    return {"watcher_id": watcher_id, "paused": True, "already": False}


def resume_watcher(config: WatcherConfig, watcher_id: str) -> dict[str, Any]:
    """Undo `pause_watcher`. Safe to run twice."""
    doc = _state_doc(config)
    entry = _entry(doc, watcher_id)
    if not isinstance(entry.get("paused"), dict):
        return {"watcher_id": watcher_id, "resumed": False, "reason": "not paused"}
    entry["paused"] = None
    write_json(config.state, doc)  # type: ignore[arg-type]
    return {"watcher_id": watcher_id, "resumed": True}


def requeue_run(config: WatcherConfig, watcher_id: str, *, incident: str) -> dict[str, Any]:
    """Release a stuck run's lock (kept in `abandoned_runs`) and queue a fresh run."""
    doc = _state_doc(config)
    entry = _entry(doc, watcher_id)
    run = entry.get("run")
    if not (isinstance(run, dict) and run.get("status") == "running"):
        return {"watcher_id": watcher_id, "requeued": False, "reason": "no running run"}
    entry.setdefault("abandoned_runs", []).append(run)
    entry.setdefault("queue", []).append(
        {"requested_by": incident, "at": now_iso(), "replaces": run.get("run_id")}
    )
    entry["run"] = None
    write_json(config.state, doc)  # type: ignore[arg-type]
    return {"watcher_id": watcher_id, "requeued": True, "run": run}


def restore_run(config: WatcherConfig, watcher_id: str, run: dict[str, Any]) -> dict[str, Any]:
    """Undo `requeue_run`: the abandoned run holds the lock again, its requeue is dropped."""
    doc = _state_doc(config)
    entry = _entry(doc, watcher_id)
    if entry.get("run") == run:
        return {"watcher_id": watcher_id, "restored": False, "reason": "already holds the lock"}
    if entry.get("run") is not None:
        return {"watcher_id": watcher_id, "restored": False, "reason": "another run holds the lock"}
    entry["run"] = run
    abandoned = [r for r in entry.get("abandoned_runs") or [] if r != run]
    queue = [q for q in entry.get("queue") or [] if q.get("replaces") != run.get("run_id")]
    for key, value in (("abandoned_runs", abandoned), ("queue", queue)):
        if value:
            entry[key] = value
        else:
            entry.pop(key, None)
    write_json(config.state, doc)  # type: ignore[arg-type]
    return {"watcher_id": watcher_id, "restored": True}


@undoable("pipelines.resume_watcher")
def _undo_pause(target: Target, watcher_id: str) -> dict[str, Any]:
    return resume_watcher(WatcherConfig.from_target(target), watcher_id)


@undoable("pipelines.restore_run")
def _undo_requeue(target: Target, watcher_id: str, run: dict[str, Any]) -> dict[str, Any]:
    return restore_run(WatcherConfig.from_target(target), watcher_id, run)
