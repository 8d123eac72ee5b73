"""Prove a workspace intact, or say precisely what is wrong with it.

Checks, in order: the ledger chain (every entry's own hash, seq and link to the entry
before), the manifest (every line well-formed, every named file present with that
sha256, no name recorded twice with different hashes), the ledger's recorded outputs
(each present in the manifest with the same hash), unrecorded files in 10_evidence,
leftover partial writes, and - with an expected head - that the ledger still contains
the entry an operator recorded elsewhere (catches a truncated tail).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import ledger, manifest
from ._fs import is_partial, sha256_file
from .layout import LAYOUT_DIRS, Workspace
from .workspace import open_workspace

EXEMPT = frozenset({"hashes.sha256", "ledger.jsonl"})


@dataclass
class VerifyReport:
    incident_id: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files_checked: int = 0
    ledger_entries: int = 0
    ledger_head: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _evidence_files(evidence: Path) -> list[str]:
    return sorted(
        path.relative_to(evidence).as_posix()
        for path in evidence.rglob("*")
        if path.is_file() or path.is_symlink()
    )


def verify_workspace(
    incident_id: str,
    root: str | Path | None = None,
    expect_head: str | None = None,
    *,
    record: bool = False,
    actor: str | None = None,
) -> VerifyReport:
    """Verify; with `record`, a failure flags the incident and a pass clears that flag."""
    workspace = open_workspace(incident_id, root)
    with workspace.locked():
        report = verify_locked(workspace, expect_head)
        if record:
            from .layout import default_actor
            from .lifecycle import flag_locked

            reason = None if report.ok else f"verify failed: {report.problems[0]}"
            entry = flag_locked(workspace, "verify", reason, actor or default_actor())
            if entry is not None:
                report.ledger_head = str(entry["hash"])
                report.ledger_entries += 1
        return report


def verify_locked(workspace: Workspace, expect_head: str | None) -> VerifyReport:
    """Verify a workspace whose lock the caller holds."""
    problems: list[str] = []
    warnings: list[str] = []
    evidence = workspace.evidence

    for sub in LAYOUT_DIRS:
        if not (workspace.path / sub).is_dir():
            problems.append(f"layout: {sub}/ is missing")

    chain = ledger.check(workspace.ledger)
    problems.extend(chain.problems)
    if chain.entries and chain.entries[0].get("kind") != "incident.opened":
        problems.append("ledger.jsonl: the first entry is not 'incident.opened': head removed")
    for entry in chain.entries:
        if entry.get("incident") != workspace.incident_id:
            problems.append(
                f"ledger entry {entry.get('seq')}: belongs to {entry.get('incident')}, "
                f"not {workspace.incident_id}"
            )

    try:
        entries = manifest.read(workspace.manifest)
    except manifest.ManifestSyntaxError as exc:
        problems.append(str(exc))
        entries = []
    except FileNotFoundError:
        problems.append("hashes.sha256 is missing")
        entries = []
    recorded: dict[str, str] = {}
    checked = 0
    for item in entries:
        where = f"hashes.sha256 line {item.line_no}"
        if item.name in recorded and recorded[item.name] != item.sha256:
            problems.append(
                f"{where}: {item.name} recorded twice with different hashes: overwritten"
            )
        recorded[item.name] = item.sha256
        path = evidence / item.name
        if ".." in Path(item.name).parts or Path(item.name).is_absolute():
            problems.append(f"{where}: {item.name!r} points outside 10_evidence")
            continue
        if not path.is_file():
            problems.append(f"{item.name}: recorded in hashes.sha256 but missing (deleted)")
            continue
        checked += 1
        actual = sha256_file(path)
        if actual != item.sha256:
            problems.append(
                f"{item.name}: sha256 {actual[:16]}… does not match recorded "
                f"{item.sha256[:16]}… (changed after sealing)"
            )

    for entry in chain.entries:
        data = entry.get("data") or {}
        outputs = list(data.get("outputs") or [])
        if entry.get("kind") == "evidence" and data.get("path"):
            outputs.append({"path": data["path"], "sha256": data.get("sha256")})
        for output in outputs:
            name, digest = output.get("path"), output.get("sha256")
            if name not in recorded:
                problems.append(
                    f"ledger entry {entry.get('seq')}: output {name} is not in hashes.sha256 "
                    "(manifest line removed)"
                )
            elif recorded[name] != digest:
                problems.append(
                    f"ledger entry {entry.get('seq')}: output {name} hash differs from "
                    "hashes.sha256 (manifest edited)"
                )

    for name in _evidence_files(evidence):
        if name in EXEMPT or name in recorded:
            continue
        if is_partial(name):
            warnings.append(f"{name}: partial write (a run in progress, or one that crashed)")
            continue
        problems.append(
            f"{name}: in 10_evidence but not recorded in hashes.sha256 (unrecorded file)"
        )

    recorded_yaml = next(
        (
            e["data"]["incident_yaml_sha256"]
            for e in reversed(chain.entries)
            if isinstance(e.get("data"), dict) and "incident_yaml_sha256" in e["data"]
        ),
        None,
    )
    if workspace.incident_yaml.is_file() and recorded_yaml is not None:
        actual = sha256_file(workspace.incident_yaml)
        if actual != recorded_yaml:
            problems.append(
                f"00_meta/incident.yaml: sha256 {actual[:16]}… is not the last recorded "
                f"{recorded_yaml[:16]}… (edited outside kfm-runbook)"
            )
    elif not workspace.incident_yaml.is_file():
        problems.append("00_meta/incident.yaml is missing")

    head = chain.head_hash
    if expect_head is not None:
        hashes = [str(e.get("hash")) for e in chain.entries]
        wanted = expect_head.strip().lower()
        if not wanted:
            problems.append("--expect-head is empty")
        elif not any(h.startswith(wanted) for h in hashes) or len(wanted) < 12:
            problems.append(
                f"expected ledger head {wanted[:16]}… is not in the ledger: entries were "
                "truncated or the ledger was rewritten"
                if len(wanted) >= 12
                else "--expect-head needs at least 12 hex digits"
            )
        elif head is not None and not head.startswith(wanted):
            later = len(hashes) - 1 - next(i for i, h in enumerate(hashes) if h.startswith(wanted))
            warnings.append(f"{later} ledger entries were appended after the expected head")

    return VerifyReport(
        incident_id=workspace.incident_id,
        ok=not problems,
        problems=problems,
        warnings=warnings,
        files_checked=checked,
        ledger_entries=len(chain.entries),
        ledger_head=head,
    )
