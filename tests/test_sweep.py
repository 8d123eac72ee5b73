"""`kfm-runbook sweep`: the matching runbooks, read-only, N at a time, each a normal run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfm_runbooks import ledger, runbook

from .conftest import Cli

CATALOG = sorted(
    runbook.load(p).id for p in runbook.discover() if runbook.load(p).id.startswith("RBK-catalog-")
)


def _runs(ws: Path) -> list[dict]:
    entries = ledger.check(ws / "10_evidence" / "ledger.jsonl").entries
    return [e["data"] for e in entries if e["kind"] == "run"]


@pytest.mark.slow
def test_a_sweep_runs_a_domain_in_parallel_and_seals_each_run(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, ws = incident
    result = cli(
        "sweep",
        "--incident",
        incident_id,
        "--target",
        str(sandbox),
        "--domain",
        "catalog",
        "--jobs",
        "2",
        "--json",
    )
    out = json.loads(result.stdout)
    rows = out["runs"]
    assert [r["runbook"] for r in rows] == CATALOG and len(CATALOG) == 4
    # the faulty sandbox: every catalog runbook finds its seeded fault, read-only
    assert {r["outcome"] for r in rows} == {"failed"} and out["exit_code"] == 1
    assert result.exit_code == 1
    assert all(r["failing"] and r["coverage"] for r in rows)
    sealed = _runs(ws)
    assert sorted(r["run_id"] for r in rows) == sorted(s["run_id"] for s in sealed)
    assert all(s["apply"] is False for s in sealed if "apply" in s)
    assert "[4/4]" in result.stderr and "2 at a time" in result.stderr
    assert cli("verify", incident_id).exit_code == 0  # parallel appends left a sound chain
    table = cli(
        "sweep",
        "--incident",
        incident_id,
        "--target",
        str(sandbox),
        "--domain",
        "catalog",
        "--signal",
        "cat_asset_digest_mismatch",
    )
    assert table.exit_code == 1
    assert "RBK-catalog-checksum-mismatch" in table.stdout
    assert "RBK-catalog-stac-validation" not in table.stdout


def test_bad_selections_are_refused_before_any_run(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, ws = incident
    base = ("sweep", "--incident", incident_id, "--target", str(sandbox))
    unknown = cli(*base, "--domain", "catalgo")
    assert unknown.exit_code == 2 and "unknown domain catalgo" in unknown.stderr
    assert "catalog" in unknown.stderr  # names the known ones
    nothing = cli(*base, "--signal", "NO_SUCH_SIGNAL")
    assert nothing.exit_code == 2 and "no runbook matches" in nothing.stderr
    assert cli(*base, "--jobs", "0").exit_code == 2
    assert cli("sweep", "--incident", "INC-20200101-999", "--target", str(sandbox)).exit_code == 2
    assert _runs(ws) == []
