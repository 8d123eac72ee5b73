"""Determinism drift: outputs whose bytes differ although the inputs that made them did not.

Three kinds of evidence, each optional in the target:

- **Generated receipts** (KFM `generated_receipt`): each pins `artifact_hashes`; every
  artifact is re-hashed from the checkout. ARTIFACT_HASH_DRIFT when the bytes differ (the
  artifact changed after its receipt), ARTIFACT_ABSENT (HOLD, never PASS) when the file is
  not in this checkout, ARTIFACT_HASH_UNSUPPORTED (HOLD) for digests we cannot recompute.
- **Run manifests**: runs of a pipeline with the same code, spec and input digests must
  produce byte-identical outputs; every output is re-hashed from disk and compared across
  the runs (DETERMINISM_OUTPUT_DRIFT) and with what the run recorded
  (RUN_OUTPUT_HASH_MISMATCH).
- **Watcher snapshots**: a prior and current snapshots of one source; when they differ only
  in retrieval fields (capture time, revision label) the input is the same
  (NO_MATERIAL_CHANGE), otherwise the changed fields are listed per record.

Holding promotion of a drifting output (a reversible entry in the holds file) contains it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import TargetError
from ...target import Target
from .. import BLOCKING, HOLD, INFO, Finding, undoable
from ..common import holding
from ..common import matchers as expected_error
from ..common.files import read_bounded, sha256_tagged
from ..common.jcs import content_bytes, content_hash
from .base import (
    SHA256_RE,
    FileReport,
    SchemaValidator,
    contained,
    json_files,
    optional_validator,
    read_json,
    rel,
    write_json,
)

SECTION = "pipelines_determinism"
MAX_OUTPUT_BYTES = 64 << 20  # one output copy compared in a diff
DRIFT_CODES = frozenset(
    {"ARTIFACT_HASH_DRIFT", "DETERMINISM_OUTPUT_DRIFT", "RUN_OUTPUT_HASH_MISMATCH"}
)
CONTRACT_CODES = frozenset(
    {"SCHEMA_INVALID", "ARTIFACT_PATHS_UNBOUND", "ARTIFACT_PATH_ESCAPE", "RUN_MANIFEST_INVALID"}
)


@dataclass(frozen=True)
class DeterminismConfig:
    base: Path
    repo_root: Path
    receipts: tuple[Path, ...]
    receipt_schema: SchemaValidator | None
    runs: tuple[Path, ...]
    prior: Path | None
    current: tuple[Path, ...]
    retrieval_fields: tuple[str, ...]
    holds: Path | None

    @classmethod
    def from_target(cls, target: Target) -> DeterminismConfig:
        section = target.section(SECTION)
        fields_ = section.get("retrieval_fields", ["captured_at", "source_revision"])
        if not isinstance(fields_, list) or not all(isinstance(f, str) for f in fields_):
            raise TargetError(
                f"target {target.path}: '{SECTION}.retrieval_fields' must be a list of names"
            )
        config = cls(
            base=target.base,
            repo_root=target.resolve(SECTION, "repo_root", required=False) or target.base,
            receipts=tuple(target.resolve_many(SECTION, "receipts")),
            receipt_schema=optional_validator(target, SECTION, "receipt_schema"),
            runs=tuple(target.resolve_many(SECTION, "runs")),
            prior=target.resolve(SECTION, "prior_snapshot", required=False),
            current=tuple(target.resolve_many(SECTION, "current_snapshots")),
            retrieval_fields=tuple(fields_),
            holds=target.resolve(SECTION, "holds", required=False),
        )
        if not (config.receipts or config.runs or config.prior):
            raise TargetError(
                f"target {target.path}: '{SECTION}' needs receipts, runs or prior_snapshot"
            )
        return config


def load_holds(config: DeterminismConfig) -> dict[str, Any]:
    if config.holds is None:
        return {}
    value, _ = read_json(config.holds)
    holds = value.get("holds") if value else None
    return holds if isinstance(holds, dict) else {}


def _held(holds: dict[str, Any], key: str) -> str | None:
    entry = holds.get(key)
    return str(entry.get("by")) if isinstance(entry, dict) else None


# --- generated receipts ----------------------------------------------------------------


@dataclass
class ArtifactCheck:
    receipt: str
    artifact: str
    status: str  # match | mismatch | absent | escape | unsupported
    held_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _artifact(
    report: FileReport, config: DeterminismConfig, path: str, pinned: Any, holds: dict[str, Any]
) -> ArtifactCheck:
    """Re-hash one pinned artifact; absent ones are summarised per receipt by the caller."""
    check = ArtifactCheck(report.file, path, "match")
    local, code = contained(config.repo_root, path)
    if local is None:
        check.status = "escape"
        report.add(
            "ARTIFACT_PATH_ESCAPE",
            "/artifact_hashes",
            f"{path!r} leaves the repository ({code}): not opened",
        )
    elif not isinstance(pinned, str) or not SHA256_RE.fullmatch(pinned):
        check.status = "unsupported"
        report.add(
            "ARTIFACT_HASH_UNSUPPORTED",
            "/artifact_hashes",
            f"{path}: digest {str(pinned)[:14]}… cannot be recomputed here",
            HOLD,
        )
    elif not local.is_file():
        check.status = "absent"
    elif sha256_tagged(local) != pinned:
        check.status = "mismatch"
        check.held_by = _held(holds, path)
        message = f"{path}: bytes changed after the receipt pinned {pinned[7:19]}…"
        if check.held_by:
            report.add(
                "ARTIFACT_HASH_DRIFT",
                "/artifact_hashes",
                f"{message} — contained: promotion held by {check.held_by}",
                INFO,
            )
        else:
            report.add("ARTIFACT_HASH_DRIFT", "/artifact_hashes", message)
    return check


def scan_receipt(
    path: Path, config: DeterminismConfig, holds: dict[str, Any]
) -> tuple[FileReport, list[ArtifactCheck]]:
    report = FileReport(rel(path, config.base))
    value, code = read_json(path)
    if value is None:
        report.add(
            code or "INPUT_READ_ERROR",
            message="receipt is not a JSON object: nothing it pins can be checked",
        )
        return report, []
    if config.receipt_schema is not None:
        errors = config.receipt_schema.errors(value)
        for error in errors:
            report.add("SCHEMA_INVALID", error.pointer, f"{error.keyword}: {error.message[:120]}")
        matcher, matcher_code = expected_error.beside(path)
        if matcher_code:
            report.add(matcher_code, message="expected-error file unusable")
        if matcher is not None:
            report.details.update(
                expected_error=matcher.text,
                expected_error_matched=matcher.matched_by(errors),
            )
        if errors:
            return report, []
    hashes = value.get("artifact_hashes")
    if not isinstance(hashes, dict) or not hashes:
        report.add("ARTIFACT_PATHS_UNBOUND", "/artifact_hashes", "no artifact hashes to verify")
        return report, []
    paths = value.get("artifact_paths")
    if isinstance(paths, list) and sorted(map(str, paths)) != sorted(hashes):
        report.add(
            "ARTIFACT_PATHS_UNBOUND",
            "/artifact_paths",
            "artifact_paths and artifact_hashes name different files",
        )
    checks = [_artifact(report, config, str(p), hashes[p], holds) for p in sorted(hashes)]
    absent = [c.artifact for c in checks if c.status == "absent"]
    if absent:
        report.add(
            "ARTIFACT_ABSENT",
            "/artifact_hashes",
            f"{len(absent)} of {len(checks)} pinned artifact(s) not in this checkout "
            f"(e.g. {absent[0]}): unverified, HOLD not PASS",
            HOLD,
        )
    report.details.update(
        artifacts=len(checks),
        match=sum(c.status == "match" for c in checks),
        mismatch=sum(c.status == "mismatch" for c in checks),
        absent=sum(c.status == "absent" for c in checks),
    )
    return report, checks


# --- run manifests ---------------------------------------------------------------------


@dataclass
class RunOutputs:
    file: str
    run_id: str
    pipeline: str
    identity: str  # canonical hash of what must determine the outputs
    outputs: dict[str, str | None]  # name -> re-hashed digest (None: unreadable/absent)


def scan_run(path: Path, config: DeterminismConfig) -> tuple[FileReport, RunOutputs | None]:
    report = FileReport(rel(path, config.base))
    value, code = read_json(path)
    if value is None:
        report.add(code or "INPUT_READ_ERROR", message="run manifest unreadable")
        return report, None
    inputs, outputs, root = value.get("inputs"), value.get("outputs"), value.get("output_root")
    if not (
        isinstance(value.get("run_id"), str)
        and isinstance(inputs, dict)
        and isinstance(outputs, dict)
        and outputs
        and all(
            isinstance(v, str) and SHA256_RE.fullmatch(v)
            for v in [*inputs.values(), *outputs.values()]
        )
    ):
        report.add(
            "RUN_MANIFEST_INVALID",
            "/",
            "run manifest needs run_id, inputs and outputs {name: sha256:<hex>}",
        )
        return report, None
    folder, code = contained(path.parent, root)
    if folder is None:
        report.add(
            "RUN_MANIFEST_INVALID",
            "/output_root",
            f"output_root {root!r} leaves the runs folder ({code})",
        )
        return report, None
    identity = content_hash(
        {k: value.get(k) for k in ("pipeline", "code_ref", "spec_hash", "inputs")}
    )
    rehashed: dict[str, str | None] = {}
    for name in sorted(outputs):
        local, code = contained(folder, name)
        if local is None or not local.is_file():
            rehashed[name] = None
            report.add(
                "RUN_OUTPUT_MISSING",
                f"/outputs/{name}",
                f"{name} cannot be re-hashed ({code or 'absent'})",
                HOLD,
            )
            continue
        rehashed[name] = sha256_tagged(local)
        if rehashed[name] != outputs[name]:
            report.add(
                "RUN_OUTPUT_HASH_MISMATCH",
                f"/outputs/{name}",
                f"{name}: bytes on disk differ from what the run recorded",
            )
    return report, RunOutputs(
        report.file, str(value["run_id"]), str(value.get("pipeline")), identity, rehashed
    )


def drift_findings(runs: list[RunOutputs], holds: dict[str, Any]) -> list[Finding]:
    """Same identity (code, spec, inputs), different output bytes: one finding per output."""
    found = []
    for identity in sorted({r.identity for r in runs}):
        group = [r for r in runs if r.identity == identity]
        if len(group) < 2:
            continue
        for name in sorted({n for r in group for n in r.outputs}):
            digests = {r.run_id: r.outputs.get(name) for r in group}
            known = {d for d in digests.values() if d}
            if len(known) > 1:
                subject = group[0].pipeline
                held = _held(holds, name)
                detail = ", ".join(
                    f"{run} {(d or 'absent')[7:19]}" for run, d in sorted(digests.items())
                )
                message = f"{len(group)} runs, same inputs, {len(known)} outputs ({detail})"
                if held:
                    found.append(
                        Finding(
                            "DETERMINISM_OUTPUT_DRIFT",
                            subject,
                            f"/outputs/{name}",
                            INFO,
                            f"{message} — contained: promotion held by {held}",
                        )
                    )
                else:
                    found.append(
                        Finding(
                            "DETERMINISM_OUTPUT_DRIFT",
                            subject,
                            f"/outputs/{name}",
                            BLOCKING,
                            message,
                        )
                    )
    return found


# --- snapshots -------------------------------------------------------------------------


def _records(doc: dict[str, Any]) -> dict[str, Any]:
    sites = doc.get("sites")
    if isinstance(sites, list):
        return {str(s.get("site_id")): s for s in sites if isinstance(s, dict)}
    return {}


def compare_snapshots(
    prior: dict[str, Any], current: dict[str, Any], retrieval: tuple[str, ...]
) -> dict[str, Any]:
    """NO_MATERIAL_CHANGE when only retrieval fields differ; else the changed fields per record."""

    def strip(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if k not in retrieval}

    same = content_bytes(strip(prior)) == content_bytes(strip(current))
    changes: dict[str, list[str]] = {}
    before, after = _records(prior), _records(current)
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a is None or b is None:
            changes[key] = ["<added>" if a is None else "<removed>"]
        elif a != b:
            changes[key] = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    top = sorted(
        k
        for k in set(prior) | set(current)
        if k not in retrieval and k != "sites" and prior.get(k) != current.get(k)
    )
    retrieval_diff = sorted(k for k in retrieval if prior.get(k) != current.get(k))
    return {
        "decision": "NO_MATERIAL_CHANGE" if same else "MATERIAL_CHANGE",
        "retrieval_fields_changed": retrieval_diff,
        "changed_fields": {**({"/": top} if top else {}), **changes},
    }


def snapshot_rows(config: DeterminismConfig) -> tuple[list[dict[str, Any]], list[Finding]]:
    if config.prior is None:
        return [], []
    prior, code = read_json(config.prior)
    if prior is None:
        return [], [
            Finding(
                code or "INPUT_READ_ERROR",
                rel(config.prior, config.base),
                "/",
                HOLD,
                "prior snapshot unreadable",
            )
        ]
    rows, found = [], []
    for path in json_files(config.current):
        current, code = read_json(path)
        name = rel(path, config.base)
        if current is None:
            found.append(
                Finding(code or "INPUT_READ_ERROR", name, "/", HOLD, "snapshot unreadable")
            )
            continue
        rows.append(
            {"snapshot": name, **compare_snapshots(prior, current, config.retrieval_fields)}
        )
    return rows, found


# --- one pass --------------------------------------------------------------------------


@dataclass
class DeterminismScan:
    receipts: list[FileReport]
    artifacts: list[ArtifactCheck]
    runs: list[FileReport]
    drift: list[Finding]
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    snapshot_findings: list[Finding] = field(default_factory=list)
    outputs: list[RunOutputs] = field(default_factory=list)

    def distinct_digests(self) -> dict[str, int]:
        """Per output name: the most distinct digests among runs sharing an input identity."""
        counts: dict[str, int] = {}
        for identity in {r.identity for r in self.outputs}:
            group = [r for r in self.outputs if r.identity == identity]
            for name in {n for r in group for n in r.outputs}:
                known = {r.outputs.get(name) for r in group} - {None}
                counts[name] = max(counts.get(name, 0), len(known))
        return dict(sorted(counts.items()))

    @property
    def findings(self) -> list[Finding]:
        out = [f for r in self.receipts + self.runs for f in r.findings]
        return out + self.drift + self.snapshot_findings

    def blocking(self, codes: frozenset[str]) -> list[Finding]:
        return [f for f in self.findings if f.code in codes and f.severity == BLOCKING]

    def held(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == HOLD]

    def drifting_outputs(self) -> list[str]:
        """What to hold: receipt artifacts and run outputs that drift, not yet held."""
        names = {f.field.removeprefix("/outputs/") for f in self.drift if f.severity == BLOCKING}
        names |= {a.artifact for a in self.artifacts if a.status == "mismatch" and not a.held_by}
        return sorted(names)


def scan(config: DeterminismConfig) -> DeterminismScan:
    holds = load_holds(config)
    receipts, artifacts = [], []
    for path in json_files(config.receipts):
        report, checks = scan_receipt(path, config, holds)
        receipts.append(report)
        artifacts += checks
    runs, outputs = [], []
    for path in json_files(config.runs):
        report, run_outputs = scan_run(path, config)
        runs.append(report)
        if run_outputs is not None:
            outputs.append(run_outputs)
    rows, snapshot_found = snapshot_rows(config)
    return DeterminismScan(
        receipts, artifacts, runs, drift_findings(outputs, holds), rows, snapshot_found, outputs
    )


# --- reversible promotion holds --------------------------------------------------------


def _holds_doc(config: DeterminismConfig) -> tuple[Path, dict[str, Any]]:
    if config.holds is None:
        raise TargetError(f"'{SECTION}.holds' is not configured: nowhere to hold promotion")
    value, code = read_json(config.holds)
    if value is None and code != "INPUT_NOT_FILE":
        raise TargetError(f"holds file {config.holds} unusable ({code})")
    doc = value or {}
    if not isinstance(doc.setdefault("holds", {}), dict):
        raise TargetError(f"holds file {config.holds}: 'holds' is not a mapping")
    return config.holds, doc


def hold_promotion(
    config: DeterminismConfig, output: str, *, incident: str, reason: str
) -> dict[str, Any]:
    """Block promotion of `output` until its drift is explained. Idempotent."""
    path, doc = _holds_doc(config)
    if not holding.place(doc["holds"], output, incident, reason):
        return {"output": output, "held": True, "already": True}
    write_json(path, doc)
    return {"output": output, "held": True, "already": False}


def release_promotion(config: DeterminismConfig, output: str) -> dict[str, Any]:
    """Undo `hold_promotion`. Safe to run twice."""
    path, doc = _holds_doc(config)
    if not holding.lift(doc["holds"], output):
        return {"output": output, "released": False, "reason": "not held"}
    write_json(path, doc)
    return {"output": output, "released": True}


def is_held(config: DeterminismConfig, output: str) -> bool:
    return _held(load_holds(config), output) is not None


@undoable("pipelines.release_promotion")
def _undo_hold(target: Target, output: str) -> dict[str, Any]:
    return release_promotion(DeterminismConfig.from_target(target), output)


# --- diagnosis (read-only) -------------------------------------------------------------


def output_diff(config: DeterminismConfig, name: str, limit: int = 8) -> list[str]:
    """How the copies of output `name` differ across runs (first two distinct ones)."""
    copies: dict[bytes, str] = {}
    for path in json_files(config.runs):
        value, _ = read_json(path)
        if not value or name not in (value.get("outputs") or {}):
            continue
        folder, _ = contained(path.parent, value.get("output_root"))
        local, _ = contained(folder, name) if folder else (None, None)
        data, _ = read_bounded(local, MAX_OUTPUT_BYTES) if local is not None else (None, None)
        if data is not None:  # a link, FIFO or oversized copy is refused, never followed
            copies.setdefault(data, str(value.get("run_id")))
    if len(copies) < 2:
        return [f"{name}: fewer than two distinct copies on disk"]
    (first, run_a), (second, run_b) = list(copies.items())[:2]
    try:
        lines_a, lines_b = first.decode().splitlines(), second.decode().splitlines()
    except UnicodeDecodeError:
        return [f"{name}: binary, {len(first)} vs {len(second)} bytes ({run_a} vs {run_b})"]
    if sorted(lines_a) == sorted(lines_b):
        head = f"{name}: same {len(lines_a)} lines in a different order ({run_a} vs {run_b})"
    else:
        head = f"{name}: content differs ({run_a} vs {run_b})"
    diff = difflib.unified_diff(lines_a, lines_b, run_a, run_b, n=0, lineterm="")
    return [head, *list(diff)[:limit]]
