"""Helpers shared by the runbook test modules (running a runbook, reading its evidence)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import nbformat
import scrapbook

from kfm_runbooks import golden, ledger

from .conftest import Cli


def run_json(cli: Cli, runbook: str, incident_id: str, target: Path, *extra: str) -> dict[str, Any]:
    """`kfm-runbook run ... --json`: the result, plus _exit, _stderr and statuses by check."""
    result = cli(
        "run", runbook, "--incident", incident_id, "--target", str(target), "--json", *extra
    )
    out: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    out["_exit"] = result.exit_code
    out["_stderr"] = result.stderr
    out["statuses"] = {c["name"]: c["status"] for c in out.get("checks", [])}
    assert_pass_coverage(out.get("checks", []))
    return out


def assert_pass_coverage(checks: list[dict[str, Any]]) -> None:
    """Every PASS carries its coverage: something in scope, and all of it verified."""
    for check in checks:
        if check.get("status") == "PASS":
            coverage = check.get("coverage") or {}
            assert coverage.get("in_scope", 0) > 0, check
            assert coverage.get("examined") == coverage.get("in_scope"), check
            assert f"verified {coverage['examined']} of {coverage['in_scope']}" in check["detail"]


def coverage(out: dict[str, Any], name: str) -> tuple[int, int]:
    """(examined, in_scope) of one check of a run."""
    [check] = [c for c in out["checks"] if c["name"] == name]
    return check["coverage"]["examined"], check["coverage"]["in_scope"]


def finding_codes(ws: Path, out: dict[str, Any]) -> list[str]:
    """Sorted codes of the run's non-info findings, read back with scrapbook."""
    book = scrapbook.read_notebook(str(ws / out["notebook"]))
    return sorted(
        s.data["code"]
        for name, s in book.scraps.items()
        if name.startswith("kfm.finding.") and s.data["severity"] != "info"
    )


def applied_actions(ws: Path) -> list[dict[str, Any]]:
    """The data of every action entry in the incident's ledger."""
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    return [e["data"] for e in entries if e["kind"] == "action"]


def wait_for_log(folder: Path, needle: str, more_than: int, patience: float = 120) -> str:
    """The access log once it holds more than `more_than` lines with `needle`: a condition
    waited for (a hang guard, generous), never a duration assumed to be enough."""
    deadline = time.monotonic() + patience
    while True:
        log = (folder / "live/logs/access.log").read_text()
        if log.count(needle) > more_than:
            return log
        assert time.monotonic() < deadline, f"only {log.count(needle)} lines with {needle!r}"
        time.sleep(0.1)


_SCRAP_MIME = "application/scrapbook.scrap.json+json"


def golden_run(runbook: str, case: str) -> dict[str, Any]:
    """What the committed golden of `runbook`'s `case` recorded: statuses, checks, non-info
    finding codes and every scrap by name (the last one of a name wins, as in scrapbook).

    A test that only needs the verdicts of a read-only run on a golden case's target asserts
    on this instead of running the kernel again: tests/test_golden.py proves the golden is
    fresh (built from this very runbook) and re-runs identically with this code, so its
    scraps are what the code gives today. Scraps of cells whose output nbval ignores
    (volatile, e.g. measured latency) are left out: nothing proves them current; a case
    with a check in such a cell is refused (its verdicts need a kernel run).
    """
    [found] = [c for c in golden.load_cases() if (c.runbook, c.case) == (runbook, case)]
    assert not found.parameters, "golden_run stands only for a run with default parameters"
    book = nbformat.read(found.path, as_version=4)
    scraps: dict[str, Any] = {}
    for cell in book.cells:
        ignored = golden.IGNORE_OUTPUT_TAG in cell.metadata.get("tags", [])
        for output in cell.get("outputs", []):
            scrap = output.get("data", {}).get(_SCRAP_MIME)
            if scrap is None:
                continue
            assert not (ignored and scrap["name"].startswith("kfm.check.")), (
                f"{found.path.name}: check {scrap['name']} is volatile; run the kernel instead"
            )
            if not ignored:
                scraps[scrap["name"]] = scrap["data"]
    checks = [data for name, data in scraps.items() if name.startswith("kfm.check.")]
    assert checks, f"the golden {found.path.name} records no check"
    assert_pass_coverage(checks)
    return {
        "statuses": {c["name"]: c["status"] for c in checks},
        "checks": checks,
        "codes": sorted(
            data["code"]
            for name, data in scraps.items()
            if name.startswith("kfm.finding.") and data["severity"] != "info"
        ),
        "scraps": scraps,
    }
