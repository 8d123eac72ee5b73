"""verify cross-checks what timeline.md and checks.md quote (hashes, a run's notebook,
ledger entry and outcome) with the ledger's data, not only with the view text it recorded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks import ledger

from .conftest import Cli
from .helpers import rewrite_ledger

pytestmark = pytest.mark.slow

CHECKS_MD = "30_verification/checks.md"
TIMELINE_MD = "00_meta/timeline.md"


def _problems(cli: Cli, incident_id: str) -> list[str]:
    result = cli("verify", incident_id, "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1)
    return list(report["problems"])


def _run(ws: Path) -> dict[str, Any]:
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    return next(e for e in entries if e["kind"] == "run")


def _line_of(ws: Path, rel: str, needle: str) -> int:
    lines = (ws / rel).read_text().splitlines()
    return next(i for i, line in enumerate(lines, start=1) if needle in line)


def test_a_consistently_rewritten_notebook_is_caught_by_its_quoted_hash(
    cli: Cli, sealed: tuple[str, Path]
) -> None:
    """Notebook edited, hashes.sha256 recomputed, the run entry's output hash rewritten and
    the chain re-hashed: everything but the quoted hash is consistent again."""
    incident_id, ws = sealed
    run = _run(ws)
    output = next(o for o in run["data"]["outputs"] if o["path"].endswith(".ipynb"))
    notebook = ws / "10_evidence" / output["path"]
    forged = notebook.read_bytes().replace(b'"passed"', b'"PASSED"', 1)
    assert forged != notebook.read_bytes()
    notebook.write_bytes(forged)
    new = hashlib.sha256(forged).hexdigest()
    manifest = ws / "10_evidence/hashes.sha256"
    manifest.write_text(manifest.read_text().replace(output["sha256"], new))

    def forge(entry: dict[str, Any]) -> None:  # every mention in the data (intent, outputs)
        entry["data"] = json.loads(json.dumps(entry["data"]).replace(output["sha256"], new))

    rewrite_ledger(ws, forge)
    line = _line_of(ws, CHECKS_MD, output["sha256"])
    assert _problems(cli, incident_id) == [
        f"{CHECKS_MD} line {line}: quotes sha256 {output['sha256'][:16]}… that no ledger entry "
        "records (written or rewritten outside kfm-runbook): restore the workspace from a "
        "verified bundle or backup; the ledger is the record",
        f"{CHECKS_MD} line {line}: notebook 10_evidence/{output['path']} quoted with sha256 "
        f"{output['sha256'][:16]}…, but ledger entry #{run['seq']} records {new[:16]}… for it "
        "(entry rewritten after sealing): restore the workspace from a verified bundle or "
        "backup; the ledger is the record",
    ]


def test_a_line_quoting_a_hash_the_ledger_does_not_have_fails(
    cli: Cli, sealed: tuple[str, Path]
) -> None:
    """Appended to timeline.md and to the text the last entry recorded for it, re-chained:
    the view check passes, the cross-check does not."""
    incident_id, ws = sealed
    fake = hashlib.sha256(b"never sealed").hexdigest()
    line = f"- 2026-01-01T00:00:00Z — evidence sha256 {fake} sealed by tester\n"
    with (ws / TIMELINE_MD).open("a") as handle:
        handle.write(line)
    last = ledger.check(ws / "10_evidence/ledger.jsonl").entries[-1]["seq"]

    def forge(entry: dict[str, Any]) -> None:
        if entry["seq"] == last:
            views = entry.setdefault("views", {})
            views[TIMELINE_MD] = views.get(TIMELINE_MD, "") + line

    rewrite_ledger(ws, forge)
    number = _line_of(ws, TIMELINE_MD, fake)
    assert _problems(cli, incident_id) == [
        f"{TIMELINE_MD} line {number}: quotes sha256 {fake[:16]}… that no ledger entry records "
        "(written or rewritten outside kfm-runbook): restore the workspace from a verified "
        "bundle or backup; the ledger is the record"
    ]


def test_a_rewritten_outcome_is_caught_by_the_views_that_quote_it(
    cli: Cli, sealed: tuple[str, Path]
) -> None:
    incident_id, ws = sealed
    run = _run(ws)
    assert run["data"]["outcome"] == "passed"

    def forge(entry: dict[str, Any]) -> None:
        if entry["seq"] == run["seq"]:
            entry["data"]["outcome"] = "failed"

    rewrite_ledger(ws, forge)
    run_id, runbook = run["data"]["run_id"], run["data"]["runbook"]["id"]
    problems = _problems(cli, incident_id)
    said = (
        f"says run {run_id} → passed, but ledger entry #{run['seq']} records run {run_id} → failed"
    )
    assert [p.split(": ", 1)[0] for p in problems] == [
        f"{TIMELINE_MD} line {_line_of(ws, TIMELINE_MD, f'run {run_id} {runbook} →')}",
        f"{CHECKS_MD} line {_line_of(ws, CHECKS_MD, f'## {run_id} ')}",
    ]
    assert all(said in p for p in problems)


def test_a_renumbered_entry_reference_is_caught(cli: Cli, sealed: tuple[str, Path]) -> None:
    incident_id, ws = sealed
    run = _run(ws)

    def forge(entry: dict[str, Any]) -> None:
        if entry["seq"] == run["seq"]:
            text = entry["views"][CHECKS_MD]
            entry["views"][CHECKS_MD] = text.replace(
                f"- ledger entry #{run['seq']}\n", f"- ledger entry #{run['seq'] + 5}\n"
            )

    checks = ws / CHECKS_MD
    checks.write_text(
        checks.read_text().replace(
            f"- ledger entry #{run['seq']}\n", f"- ledger entry #{run['seq'] + 5}\n"
        )
    )
    rewrite_ledger(ws, forge)
    line = _line_of(ws, CHECKS_MD, f"- ledger entry #{run['seq'] + 5}")
    assert _problems(cli, incident_id) == [
        f"{CHECKS_MD} line {line}: says ledger entry #{run['seq'] + 5}, but ledger entry "
        f"#{run['seq']} recorded this line (entries renumbered or rewritten): restore the "
        "workspace from a verified bundle or backup; the ledger is the record"
    ]


def test_notes_quoting_hashes_are_not_false_failures(cli: Cli, sealed: tuple[str, Path]) -> None:
    """A note may quote an evidence hash or an outside one (an image digest): the ledger
    records the note, so what its timeline line quotes is backed."""
    incident_id, ws = sealed
    evidence = _run(ws)["data"]["outputs"][0]["sha256"]
    outside = hashlib.sha256(b"registry image").hexdigest()
    note = f"compared with {evidence} and rolled back to image sha256:{outside}"
    result = cli("incident", "note", incident_id, "--hypothesis", note)
    assert result.exit_code == 0, result.output
    assert outside in (ws / TIMELINE_MD).read_text()
    assert _problems(cli, incident_id) == []
