"""Helpers shared by the runbook test modules (running a runbook, reading its evidence)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import scrapbook

from kfm_runbooks import ledger

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
    return out


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
