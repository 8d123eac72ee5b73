"""Prove a workspace intact, or say precisely what is wrong with it.

`verify_locked` is a pipeline of named checks over one `Audit`:

    layout       the seed's folders are real folders (not links out)
    chain        every ledger entry well-formed, hashing to itself, linked to the one before
    manifest     hashes.sha256 readable (UTF-8, no torn line), no name twice with two hashes
    agreement    manifest and ledger agree both ways: every output a ledger entry records
                 has its manifest line, every manifest line has its ledger entry
    evidence     every recorded file is a regular file (no link, FIFO, device; opened
                 without following links or blocking) whose bytes hash as recorded
    unrecorded   nothing else in 10_evidence; a `.partial` file is explained by a run in
                 progress or named as a leftover (or a plant)
    views        timeline.md, commands.md, rollback.md, checks.md, metrics.md are rebuilt
                 from the text every ledger entry recorded for them and compared byte for byte
    quoted       what timeline.md and checks.md quote is what the ledger's data records: each
                 sha256 they quote is a hash some entry's data holds; a run's notebook
                 sha256, ledger entry number and outcome are those of the run's own entry
    records      every comms update and report is the file the ledger hashed; nothing
                 unrecorded beside them
    record       00_meta/incident.yaml is the version the ledger last recorded
    unfinished   no publication or run left unfinished by a kill (the next command finishes
                 them: recovery.py)
    head         with --expect-head: the ledger still holds the head recorded elsewhere
    signatures   every signed entry's SSH signature (signing.py) is intact, belongs to this
                 incident's entry and, with --allowed-signers, was made by a listed key (its
                 signer named per entry); no unsigned entry after a signed one, none at all
                 when the incident requires signatures
    attestations every run's in-toto attestation (attestation.py) is signed by the entry's
                 signer and names exactly the files its ledger entry recorded

What this proves, and what it cannot: everything above is checked against the ledger, and
the ledger against itself. Someone with write access who rewrites the ledger *and* every
file consistently, or cuts entries off its end, leaves a self-consistent workspace: only a
head recorded outside it (`--expect-head`, pasted into the incident channel at each run)
or a signature detects that: with a signing key configured every entry is signed, and a
rewrite without the key leaves unsigned or badly signed entries (`signatures`).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import attestation, evidence, ledger, manifest, signing
from ._fs import (
    NotRegularError,
    is_partial,
    read_regular,
    regular_problem,
    sha256_many,
    sha256_regular,
)
from ._proc import owner_state
from .history import History
from .layout import CHECKS, LAYOUT_DIRS, TIMELINE, VIEWS, Workspace
from .workspace import open_workspace

EXEMPT = frozenset({"hashes.sha256", "ledger.jsonl"})
RECORD_KINDS = ("comms.update", "report")
RECORD_FOLDERS = ("00_meta/updates", "90_postmortem")


@dataclass
class VerifyReport:
    incident_id: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files_checked: int = 0
    ledger_entries: int = 0
    ledger_head: str | None = None
    signatures: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Audit:
    """What the checks share: the workspace, what they read, what they found."""

    workspace: Workspace
    expect_head: str | None
    entries: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, str] = field(default_factory=dict)  # name -> sha256
    manifest_lines: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: int = 0
    allowed_signers: Path | None = None
    signatures: signing.SignatureReport | None = None

    @property
    def evidence(self) -> Path:
        return self.workspace.evidence


def verify_workspace(
    incident_id: str,
    root: str | Path | None = None,
    expect_head: str | None = None,
    *,
    record: bool = False,
    actor: str | None = None,
    allowed_signers: Path | None = None,
) -> VerifyReport:
    """Verify; with `record`, first finish what a kill left unfinished (recovery.py), then a
    failure flags the incident and a pass clears that flag. A ledger that does not verify
    is never appended to."""
    from .layout import default_actor

    actor = actor or default_actor()
    workspace = open_workspace(incident_id, root)
    with workspace.locked():
        if record:
            from .recovery import recover_locked

            recover_locked(workspace, actor, strict=False)
        report = verify_locked(workspace, expect_head, allowed_signers=allowed_signers)
        if record and not _ledger_damaged(report) and _may_sign(report):
            from .flags import flag_locked

            reason = None if report.ok else f"verify failed: {report.problems[0]}"
            entry = flag_locked(workspace, "verify", reason, actor)
            if entry is not None:
                report.ledger_head = str(entry["hash"])
                report.ledger_entries += 1
        return report


def _may_sign(report: VerifyReport) -> bool:
    """A signed ledger gets no unsigned verdict entry from a verifier without the key (it
    would read as a rewrite); the verdict is printed, not recorded, and that is said."""
    if not (report.signatures or {}).get("signed") or signing.configured_key() is not None:
        return True
    report.warnings.append(
        "verdict not recorded in the ledger: its entries are signed and no signing key is "
        "configured here"
    )
    return False


def _ledger_damaged(report: VerifyReport) -> bool:
    return any(p.startswith("ledger.jsonl") for p in report.problems)


def verify_locked(
    workspace: Workspace, expect_head: str | None, *, allowed_signers: Path | None = None
) -> VerifyReport:
    """Verify a workspace whose lock the caller holds (changes nothing)."""
    audit = Audit(workspace, expect_head, allowed_signers=allowed_signers)
    for step in STEPS:
        step(audit)
    return VerifyReport(
        incident_id=workspace.incident_id,
        ok=not audit.problems,
        problems=audit.problems,
        warnings=audit.warnings,
        files_checked=audit.checked,
        ledger_entries=len(audit.entries),
        ledger_head=str(audit.entries[-1]["hash"]) if audit.entries else None,
        signatures=_signature_summary(audit),
    )


def _signature_summary(audit: Audit) -> dict[str, Any] | None:
    found = audit.signatures
    if found is None:
        return None
    return {
        "summary": found.summary(len(audit.entries)),
        "signed": found.signed,
        "required": found.required,
        "checked_against": str(audit.allowed_signers) if audit.allowed_signers else None,
        "entries": found.signers,
    }


# --- the steps ---------------------------------------------------------------------------


def check_layout(audit: Audit) -> None:
    for sub in LAYOUT_DIRS:
        try:
            mode = os.lstat(audit.workspace.path / sub).st_mode
        except FileNotFoundError:
            audit.problems.append(f"layout: {sub}/ is missing")
            continue
        if not stat.S_ISDIR(mode):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a folder"
            audit.problems.append(f"layout: {sub}/ is {kind} (evidence must live in the workspace)")


def check_chain(audit: Audit) -> None:
    chain = ledger.check(audit.workspace.ledger)
    audit.problems.extend(chain.problems)
    audit.entries = chain.entries
    if chain.entries and chain.entries[0]["kind"] != "incident.opened":
        audit.problems.append(
            "ledger.jsonl: the first entry is not 'incident.opened': head removed"
        )
    for entry in chain.entries:
        if entry["incident"] != audit.workspace.incident_id:
            audit.problems.append(
                f"ledger entry {entry['seq']}: belongs to {entry['incident']}, "
                f"not {audit.workspace.incident_id}"
            )


def check_manifest(audit: Audit) -> None:
    try:
        entries = manifest.read(audit.workspace.manifest)
    except manifest.ManifestSyntaxError as exc:
        audit.problems.append(str(exc))
        return
    except NotRegularError as exc:
        audit.problems.append(f"hashes.sha256: {exc.kind}, not a regular file")
        return
    if not audit.workspace.manifest.exists():
        audit.problems.append("hashes.sha256 is missing")
    for item in entries:
        where = f"hashes.sha256 line {item.line_no}"
        if item.name in audit.manifest and audit.manifest[item.name] != item.sha256:
            audit.problems.append(
                f"{where}: {item.name} recorded twice with different hashes: overwritten"
            )
        if ".." in Path(item.name).parts or Path(item.name).is_absolute():
            audit.problems.append(f"{where}: {item.name!r} points outside 10_evidence")
            continue
        audit.manifest[item.name] = item.sha256
        audit.manifest_lines[item.name] = item.line_no


def ledger_outputs(entries: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
    """10_evidence-relative name -> (sha256, seq) of every file a finished entry recorded."""
    found: dict[str, tuple[str, int]] = {}
    for entry in entries:
        if entry["kind"] == evidence.INTENT:
            continue  # announced, not recorded: its finishing entry records them
        data = entry["data"]
        outputs = [o for o in data.get("outputs") or [] if isinstance(o, dict)]
        if entry["kind"] == "evidence" and data.get("path"):
            outputs.append({"path": data["path"], "sha256": data.get("sha256")})
        for output in outputs:
            found[str(output.get("path"))] = (str(output.get("sha256")), int(entry["seq"]))
    return found


def check_agreement(audit: Audit) -> None:
    recorded = ledger_outputs(audit.entries)
    for name, (digest, seq) in recorded.items():
        if name not in audit.manifest:
            audit.problems.append(
                f"ledger entry {seq}: output {name} is not in hashes.sha256 (manifest line removed)"
            )
        elif audit.manifest[name] != digest:
            audit.problems.append(
                f"ledger entry {seq}: output {name} hash differs from hashes.sha256 "
                "(manifest edited)"
            )
    for name, line_no in audit.manifest_lines.items():
        if name not in recorded:
            audit.problems.append(
                f"{name}: in hashes.sha256 but in no ledger entry (line {line_no}: planted "
                "together with its own manifest line?)"
            )


def check_evidence(audit: Audit) -> None:
    names = list(audit.manifest)
    hashed = sha256_many([audit.evidence / name for name in names], audit.evidence)
    for name, got in zip(names, hashed, strict=True):
        digest = audit.manifest[name]
        if isinstance(got, FileNotFoundError):
            audit.problems.append(f"{name}: recorded in hashes.sha256 but missing (deleted)")
            continue
        if isinstance(got, NotRegularError):
            audit.problems.append(f"{name}: {got.kind}, not a regular file")
            continue
        if isinstance(got, OSError):
            raise got
        actual = got[0]
        audit.checked += 1
        if actual != digest:
            audit.problems.append(
                f"{name}: sha256 {actual[:16]}… does not match recorded "
                f"{digest[:16]}… (changed after sealing)"
            )


def _walk(folder: Path) -> list[str]:
    """Every non-folder below `folder` (links, FIFOs included), never following a link."""
    names: list[str] = []
    for parent, dirs, files in os.walk(folder, followlinks=False):
        base = Path(parent)
        for name in files + [d for d in dirs if (base / d).is_symlink()]:
            names.append((base / name).relative_to(folder).as_posix())
    return sorted(names)


def check_unrecorded(audit: Audit) -> None:
    history = History(audit.entries, [])
    pending = evidence.unfinished(audit.entries)
    staged = {
        p.removeprefix(evidence.EVIDENCE_PREFIX)
        for p in (evidence.staged_paths(pending) if pending else set())
    }
    notebooks = {str(e["data"].get("partial")): e for e in history.of("run.started")}
    open_runs = {str(e["data"].get("run_id")) for e in history.open_runs}
    for name in _walk(audit.evidence):
        if name in EXEMPT or name in audit.manifest or name in staged:
            continue
        started = notebooks.get(f"{evidence.EVIDENCE_PREFIX}{name}")
        if started is not None:
            _partial_notebook(audit, name, started["data"], open_runs)
            continue
        if is_partial(name):
            audit.problems.append(
                f"{name}: partial file no recorded run or seal explains (planted, or left by "
                "an older kfm-runbook): move it out of 10_evidence"
            )
            continue
        audit.problems.append(
            f"{name}: in 10_evidence but not recorded in hashes.sha256 (unrecorded file)"
        )


def _partial_notebook(audit: Audit, name: str, data: dict[str, Any], open_runs: set[str]) -> None:
    """The notebook a headless run's worker writes: in progress, or left by a dead runner."""
    run_id = str(data.get("run_id"))
    state = owner_state(data.get("runner"), data.get("host"))
    sealed = run_id not in open_runs
    if state != "dead":
        what = "sealed; its runner removes this copy" if sealed else "in progress"
        audit.warnings.append(f"{name}: run {run_id} {what} ({state})")
    elif sealed:
        audit.problems.append(
            f"{name}: copy left by run {run_id}, sealed before its runner died: the next "
            "kfm-runbook command on the incident removes it"
        )
    else:
        audit.problems.append(
            f"{name}: notebook of run {run_id}, whose runner died before sealing it: the "
            "next kfm-runbook command on the incident seals it as aborted"
        )


def check_views(audit: Audit) -> None:
    if not audit.entries:
        return
    if "views" not in audit.entries[0]:
        audit.warnings.append(
            "timeline/commands/rollback/checks/metrics are not verifiable: this workspace "
            "predates view recording"
        )
        return
    expected: dict[str, list[str]] = {rel: [] for rel in VIEWS}
    for entry in audit.entries:
        for rel, text in (entry.get("views") or {}).items():
            if rel not in expected:
                audit.problems.append(f"ledger entry {entry['seq']}: unknown view {rel!r}")
                continue
            expected[rel].append(text)
    for rel, parts in expected.items():
        want = "".join(parts).encode()
        try:
            have = read_regular(audit.workspace.path / rel, base=audit.workspace.path)
        except FileNotFoundError:
            audit.problems.append(f"{rel}: missing (deleted); the ledger holds its text")
            continue
        except NotRegularError as exc:
            audit.problems.append(f"{rel}: {exc.kind}, not a regular file")
            continue
        audit.checked += 1
        if have == want:
            continue
        if want.startswith(have):
            audit.problems.append(
                f"{rel}: ends {len(want) - len(have)} bytes short of what the ledger recorded "
                "(truncated, or a kill cut an append: the next command completes it)"
            )
        else:
            audit.problems.append(
                f"{rel}: differs from what the ledger recorded for it (edited outside kfm-runbook)"
            )


_SHA256 = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_QUOTED_NOTEBOOK = re.compile(r"^- notebook `([^`]+)` sha256 `([0-9a-fA-F]{64})`$")
_QUOTED_ENTRY = re.compile(r"^- ledger entry #(\d+)$")
_QUOTED_SECTION = re.compile(r"^## (\S+) · (\S+) v.* · \*\*([a-z-]+)\*\*$")
_QUOTED_RUN = re.compile(r" — (?:run|session) (\S+) (\S+) → ([a-z-]+) \(.*; ledger #(\d+)$")
_QUOTING = (TIMELINE, CHECKS)
_RESTORE = "restore the workspace from a verified bundle or backup; the ledger is the record"


def _data_hashes(value: Any, found: set[str]) -> set[str]:
    """Every sha256 written anywhere in an entry's data (keys and values)."""
    if isinstance(value, str):
        found.update(h.lower() for h in _SHA256.findall(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            _data_hashes(key, found)
            _data_hashes(item, found)
    elif isinstance(value, list):
        for item in value:
            _data_hashes(item, found)
    return found


def check_quoted(audit: Audit) -> None:
    """The views are rebuilt from text the ledger holds (check_views), but that text is not
    the ledger's data: an entry whose data was rewritten and re-chained keeps its old view
    text. So every sha256 timeline.md and checks.md quote must be one the ledger's data
    records (the entries' hashes and data, never their view text), and the claims they make
    about a run (its notebook's sha256, its ledger entry, its outcome) must be its entry's."""
    if not audit.entries or "views" not in audit.entries[0]:
        return
    backed: set[str] = set()
    for entry in audit.entries:
        backed.update(str(entry.get(key)).lower() for key in ("hash", "prev"))
        _data_hashes(entry["data"], backed)
    for rel in _QUOTING:
        _check_quoted_file(audit, rel, backed)
        line_no = 0
        for entry in audit.entries:
            text = (entry.get("views") or {}).get(rel)
            if not isinstance(text, str):
                continue
            lines = text.splitlines()
            if entry["kind"] in ("run", "session.sealed"):
                for offset, line in enumerate(lines, start=1):
                    problem = _run_claim(entry, line)
                    if problem is not None:
                        audit.problems.append(f"{rel} line {line_no + offset}: {problem}")
            line_no += text.count("\n")


def _check_quoted_file(audit: Audit, rel: str, backed: set[str]) -> None:
    """Each sha256 the file on disk quotes, by line, against the ledger's data."""
    try:
        text = read_regular(audit.workspace.path / rel, base=audit.workspace.path)
    except (OSError, NotRegularError):
        return  # check_views names it
    for line_no, line in enumerate(text.decode("utf-8", "replace").splitlines(), start=1):
        for quoted in _SHA256.findall(line):
            if quoted.lower() not in backed:
                audit.problems.append(
                    f"{rel} line {line_no}: quotes sha256 {quoted[:16]}… that no ledger entry "
                    f"records (written or rewritten outside kfm-runbook): {_RESTORE}"
                )


def _run_claim(entry: dict[str, Any], line: str) -> str | None:
    """What a run's own view line claims that its ledger entry does not record, if any."""
    data = entry["data"]
    seq = int(entry["seq"])
    outcome = str(data.get("outcome"))
    if match := _QUOTED_NOTEBOOK.match(line):
        path, quoted = match.group(1), match.group(2).lower()
        outputs = {
            f"{evidence.EVIDENCE_PREFIX}{o.get('path')}": str(o.get("sha256"))
            for o in data.get("outputs") or []
            if isinstance(o, dict)
        }
        recorded = outputs.get(path)
        if recorded != quoted:
            has = f"records {recorded[:16]}… for it" if recorded else "records no such output"
            return (
                f"notebook {path} quoted with sha256 {quoted[:16]}…, but ledger entry #{seq} "
                f"{has} (entry rewritten after sealing): {_RESTORE}"
            )
    elif (match := _QUOTED_ENTRY.match(line)) or (match := _QUOTED_RUN.search(line)):
        quoted_seq = int(match.groups()[-1])
        if quoted_seq != seq:
            return (
                f"says ledger entry #{quoted_seq}, but ledger entry #{seq} recorded this line "
                f"(entries renumbered or rewritten): {_RESTORE}"
            )
    if (match := _QUOTED_SECTION.match(line)) or (match := _QUOTED_RUN.search(line)):
        run_id, quoted_outcome = match.group(1), match.group(3)
        if run_id != data.get("run_id") or quoted_outcome != outcome:
            return (
                f"says run {run_id} → {quoted_outcome}, but ledger entry #{seq} records run "
                f"{data.get('run_id')} → {outcome} (entry rewritten after sealing): {_RESTORE}"
            )
    return None


def check_records(audit: Audit) -> None:
    recorded: dict[str, tuple[str, int]] = {}
    for entry in audit.entries:
        data = entry["data"]
        if entry["kind"] in RECORD_KINDS and isinstance(data.get("path"), str):
            recorded[str(data["path"])] = (str(data.get("sha256")), int(entry["seq"]))
        if entry["kind"] == evidence.TORN:
            for item in data.get("files") or []:
                if not str(item.get("path")).startswith(evidence.EVIDENCE_PREFIX):
                    recorded[str(item["path"])] = (str(item.get("sha256")), int(entry["seq"]))
    for rel, (digest, seq) in recorded.items():
        path = audit.workspace.path / rel
        try:
            actual = sha256_regular(path, audit.workspace.path)[0]
        except FileNotFoundError:
            audit.problems.append(f"{rel}: recorded by ledger entry {seq} but missing (deleted)")
            continue
        except NotRegularError as exc:
            audit.problems.append(f"{rel}: {exc.kind}, not a regular file")
            continue
        audit.checked += 1
        if actual != digest:
            audit.problems.append(
                f"{rel}: sha256 {actual[:16]}… is not the {digest[:16]}… ledger entry {seq} "
                "recorded (edited after publishing)"
            )
    pending = evidence.unfinished(audit.entries)
    staged = evidence.staged_paths(pending) if pending else set()
    for folder in RECORD_FOLDERS:
        for name in _walk(audit.workspace.path / folder):
            rel = f"{folder}/{name}"
            if rel in recorded or rel in staged or not _is_record(folder, name):
                continue
            audit.problems.append(f"{rel}: not recorded in the ledger (unrecorded record)")


def _is_record(folder: str, name: str) -> bool:
    """Files kfm-runbook publishes there (postmortem drafts are people's, not checked)."""
    if folder == "00_meta/updates":
        return True
    base = name.rsplit("/", 1)[-1]
    return base.startswith(("report-", ".report-"))


def check_record(audit: Audit) -> None:
    recorded = next(
        (
            str(e["data"]["incident_yaml_sha256"])
            for e in reversed(audit.entries)
            if "incident_yaml_sha256" in e["data"]
        ),
        None,
    )
    path = audit.workspace.incident_yaml
    problem = regular_problem(path, "00_meta/incident.yaml", audit.workspace.path)
    if problem is not None:
        audit.problems.append(problem)
        return
    if recorded is None:
        return
    actual = sha256_regular(path)[0]
    if actual != recorded:
        audit.problems.append(
            f"00_meta/incident.yaml: sha256 {actual[:16]}… is not the last recorded "
            f"{recorded[:16]}… (edited outside kfm-runbook)"
        )


def check_unfinished(audit: Audit) -> None:
    pending = evidence.unfinished(audit.entries)
    if pending is not None:
        kind = (pending["data"].get("entry") or {}).get("kind")
        audit.problems.append(
            f"ledger entry {pending['seq']}: the publication of a {kind} entry was interrupted "
            "(a kill while sealing): the next kfm-runbook command on the incident finishes it"
        )
    for entry in evidence_torn(audit.entries):
        audit.warnings.append(
            f"ledger entry {entry['seq']}: a publication torn by a kill lost "
            f"{', '.join(entry['data'].get('lost') or [])} (recorded)"
        )


def check_signatures(audit: Audit) -> None:
    if audit.allowed_signers is not None and not audit.allowed_signers.is_file():
        audit.problems.append(f"--allowed-signers {audit.allowed_signers}: not a readable file")
        return
    found = signing.check_entries(audit.entries, audit.allowed_signers)
    audit.signatures = found
    audit.problems.extend(found.problems)
    audit.warnings.extend(found.warnings)


def check_attestations(audit: Audit) -> None:
    """Each recorded attestation signed by its entry's key, naming the entry's files."""
    for entry in audit.entries:
        for output in entry["data"].get("outputs") or []:
            path = output.get("path") if isinstance(output, dict) else None
            if not isinstance(path, str) or not path.endswith(attestation.SUFFIX):
                continue
            try:
                data = read_regular(audit.evidence / path, base=audit.evidence)
            except (OSError, NotRegularError):
                continue  # missing or not a file: the evidence step names it
            audit.problems.extend(attestation.check(data, entry, f"10_evidence/{path}"))


def evidence_torn(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["kind"] == evidence.TORN]


def check_head(audit: Audit) -> None:
    if audit.expect_head is None:
        return
    hashes = [str(e["hash"]) for e in audit.entries]
    wanted = audit.expect_head.strip().lower()
    head = hashes[-1] if hashes else None
    if not wanted:
        audit.problems.append("--expect-head is empty")
    elif len(wanted) < 12:
        audit.problems.append("--expect-head needs at least 12 hex digits")
    elif not any(h.startswith(wanted) for h in hashes):
        audit.problems.append(
            f"expected ledger head {wanted[:16]}… is not in the ledger: entries were "
            "truncated or the ledger was rewritten"
        )
    elif head is not None and not head.startswith(wanted):
        later = len(hashes) - 1 - next(i for i, h in enumerate(hashes) if h.startswith(wanted))
        audit.warnings.append(f"{later} ledger entries were appended after the expected head")


STEPS: tuple[Callable[[Audit], None], ...] = (
    check_layout,
    check_chain,
    check_manifest,
    check_agreement,
    check_evidence,
    check_unrecorded,
    check_views,
    check_quoted,
    check_records,
    check_record,
    check_unfinished,
    check_head,
    check_signatures,
    check_attestations,
)
