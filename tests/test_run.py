"""Runs through the CLI with papermill and the real project kernel (no mocks)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
import scrapbook

import kfm_runbooks
from kfm_runbooks import ledger, manifest
from kfm_runbooks.errors import KernelMissingError
from kfm_runbooks.execute import RunOptions, run_runbook

from .conftest import CHECKSUM, KFM_SAMPLE, NOTEBOOKS, Cli, sha256sum_check
from .helpers import assert_pass_coverage, coverage

pytestmark = pytest.mark.slow


def _run(cli: Cli, notebook: str, incident_id: str, *extra: str) -> dict:
    ref = notebook if notebook.startswith("RBK-") else str(NOTEBOOKS / f"{notebook}.ipynb")
    result = cli("run", ref, "--incident", incident_id, "--json", *extra)
    out = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    out["_exit"] = result.exit_code
    out["_stderr"] = result.stderr
    assert_pass_coverage(out.get("checks", []))
    return out


def _evidence_names(ws: Path) -> list[str]:
    return sorted(
        p.relative_to(ws / "10_evidence").as_posix()
        for p in (ws / "10_evidence").rglob("*")
        if p.is_file()
    )


def _assert_sealed(ws: Path) -> None:
    check = sha256sum_check(ws)
    assert check.returncode == 0, check.stdout + check.stderr
    assert ledger.check(ws / "10_evidence/ledger.jsonl").problems == []
    assert not [n for n in _evidence_names(ws) if "partial" in n]


def test_end_to_end_triage_then_apply(cli: Cli, incident: tuple[str, Path], sandbox: Path) -> None:
    incident_id, ws = incident
    triage = _run(cli, CHECKSUM, incident_id, "--target", str(sandbox))
    assert triage["_exit"] == 1 and triage["outcome"] == "failed"
    statuses = {c["name"]: c["status"] for c in triage["checks"]}
    assert statuses == {
        "table-item_verdicts": "FAIL",
        "asset-digests": "FAIL",
        "asset-and-catalog-links": "FAIL",
    }
    assert triage["findings"] == 3
    nb_path = ws / triage["notebook"]
    book = scrapbook.read_notebook(str(nb_path))
    codes = sorted(s.data["code"] for n, s in book.scraps.items() if n.startswith("kfm.finding."))
    assert codes == ["CAT_ASSET_DIGEST_MISMATCH", "CAT_ASSET_NOT_FOUND", "CAT_LINK_BROKEN"]
    assert book.scraps["kfm.check.asset-digests"].data["status"] == "FAIL"

    contained = _run(cli, CHECKSUM, incident_id, "--target", str(sandbox), "--apply")
    assert contained["_exit"] == 0 and contained["outcome"] == "passed"
    # 3 local assets left after quarantine, all verified; the embargoed one is out of scope
    assert coverage(contained, "asset-digests") == (3, 3)
    assert coverage(contained, "asset-and-catalog-links") == (4, 4)
    again = _run(cli, CHECKSUM, incident_id, "--target", str(sandbox), "--apply")
    assert again["_exit"] == 0 and again["findings"] == 0  # idempotent: nothing left to do

    verify = cli("verify", incident_id, "--expect-head", again["ledger_head"])
    assert verify.exit_code == 0, verify.output
    _assert_sealed(ws)
    kinds = [e["kind"] for e in ledger.check(ws / "10_evidence/ledger.jsonl").entries]
    assert kinds.count("run") == 3 and kinds.count("action") == 3
    timeline = (ws / "00_meta/timeline.md").read_text()
    assert timeline.count("RBK-catalog-checksum-mismatch →") == 3
    checks = (ws / "30_verification/checks.md").read_text()
    assert "| FAIL | asset-digests |" in checks and "**passed**" in checks
    rollback = (ws / "20_actions/rollback.md").read_text()
    assert rollback.count("kfm-runbook rollback") == 3


def test_run_entry_records_everything(cli: Cli, incident: tuple[str, Path], sandbox: Path) -> None:
    incident_id, ws = incident
    out = _run(cli, CHECKSUM, incident_id, "--target", str(sandbox), "--actor", "carol")
    entry = ledger.check(ws / "10_evidence/ledger.jsonl").entries[-1]
    data = entry["data"]
    assert (
        entry["kind"] == "run" and entry["actor"] == "carol" and entry["hash"] == out["ledger_head"]
    )
    assert data["runbook"]["id"] == CHECKSUM and len(data["runbook"]["sha256"]) == 64
    assert data["parameters"]["incident_id"] == incident_id and data["parameters"]["apply"] is False
    assert data["started"].endswith("Z") and data["ended"].endswith("Z")
    assert data["tool_version"] == kfm_runbooks.__version__  # the code that sealed it
    outputs = {o["path"]: o["sha256"] for o in data["outputs"]}
    recorded = {e.name: e.sha256 for e in manifest.read(ws / "10_evidence/hashes.sha256")}
    for path, digest in outputs.items():
        assert recorded[path] == digest
    assert any(p.endswith(".prov.json") for p in outputs)
    assert any(p.endswith(".target.yaml") for p in outputs)
    nb = nbformat.read(ws / out["notebook"], as_version=4)
    assert nb.metadata["kfm_run"]["outcome"] == "failed"
    assert nb.metadata["kfm_run"]["actor"] == "carol"


def test_kfm_fixture_verdicts_through_the_runbook(cli: Cli, incident: tuple[str, Path]) -> None:
    incident_id, ws = incident
    out = _run(
        cli, CHECKSUM, incident_id, "--target", str(KFM_SAMPLE / "catalog_health.target.yaml")
    )
    assert out["_exit"] == 1
    statuses = {c["name"]: c["status"] for c in out["checks"]}
    assert statuses["asset-digests"] == "FAIL"  # digest mismatch
    assert statuses["asset-and-catalog-links"] == "FAIL"  # ../outside.bin
    assert statuses["table-item_verdicts"] == "FAIL"  # its own verdict table has FAILs
    book = scrapbook.read_notebook(str(ws / out["notebook"]))
    verdicts = {
        Path(r["file"]).name: (r["outcome"], r["codes"])
        for r in book.scraps["kfm.table.item_verdicts"].data
    }
    fixture = KFM_SAMPLE / "fixtures/data/catalog_health"
    outcomes = json.loads((fixture / "expected_outcomes.json").read_text())
    findings = json.loads((fixture / "expected_findings.json").read_text())
    assert verdicts == {name: (outcomes[name], sorted(findings[name])) for name in outcomes}


def test_parameters_round_trip_and_kernel_settings(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, ws = incident
    note = "quote ' double \" backslash \\ newline\nend"
    out = _run(
        cli,
        "echo_params",
        incident_id,
        "--target",
        str(sandbox),
        "-p",
        "ticket=00123",
        "-p",
        f"note={note}",
        "-p",
        "limit=7",
        "-p",
        'flags=[1,"a"]',
    )
    assert out["_exit"] == 0, out["_stderr"]
    book = scrapbook.read_notebook(str(ws / out["notebook"]))
    [params] = book.scraps["kfm.table.params"].data
    assert params["ticket"] == "00123" and params["note"] == note
    assert params["limit"] == 7 and params["flags"] == [1, "a"] and params["apply"] is False
    assert params["types"] == ["str", "str", "int", "float", "list"]
    [kernel] = book.scraps["kfm.table.kernel"].data
    assert kernel["transport"] == "ipc", "kernels must not listen on TCP"
    assert kernel["tz"] == "UTC" and kernel["hashseed"] == "0"
    assert "running over TCP" not in out["_stderr"]


@pytest.mark.parametrize(
    ("notebook", "extra", "exit_code", "outcome"),
    [
        ("raising_cell", (), 3, "errored"),
        ("kills_kernel", (), 4, "kernel-died"),
        ("hangs", ("--timeout", "8"), 4, "timeout"),
        ("no_checks", (), 1, "unverified"),
        ("hold", (), 1, "hold"),
    ],
)
def test_failed_runs_still_leave_sealed_evidence(
    cli: Cli,
    incident: tuple[str, Path],
    sandbox: Path,
    notebook: str,
    extra: tuple[str, ...],
    exit_code: int,
    outcome: str,
) -> None:
    incident_id, ws = incident
    out = _run(cli, notebook, incident_id, "--target", str(sandbox), *extra)
    assert out["_exit"] == exit_code, out["_stderr"]
    assert out["outcome"] == outcome
    nb = nbformat.read(ws / out["notebook"], as_version=4)
    assert nb.metadata["kfm_run"]["outcome"] == outcome
    if outcome in ("timeout", "kernel-died"):
        assert nb.cells[0].id == "kfm-run-aborted"
        assert outcome.upper() in nb.cells[0].source
    if notebook == "raising_cell":
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert any(o.get("ename") == "ValueError" for o in outputs)
        assert any("before the error" in o.get("text", "") for o in outputs)
    _assert_sealed(ws)
    assert cli("verify", incident_id).exit_code == 0


def _processes_of_run(run_id: str) -> list[int]:
    """Live processes (the worker, the kernel) whose environment names this run."""
    needle = f"KFM_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ:
            found.append(int(entry.name))
    return found


def test_timeout_stops_the_kernel(cli: Cli, incident: tuple[str, Path], sandbox: Path) -> None:
    """Whether or not the kernel got as far as its hanging cell within the limit (that
    depends on the machine), nothing of the run is left running and the run is sealed."""
    incident_id, ws = incident
    out = _run(cli, "hangs", incident_id, "--target", str(sandbox), "--timeout", "8")
    assert out["_exit"] == 4 and out["outcome"] == "timeout", out["_stderr"][-2000:]
    assert _processes_of_run(out["run_id"]) == []
    book = scrapbook.read_notebook(str(ws / out["notebook"]))
    if "kfm.metric.kernel_pid" in book.scraps:  # it reached the hanging cell
        with pytest.raises(ProcessLookupError):
            os.kill(book.scraps["kfm.metric.kernel_pid"].data["value"], 0)


def test_secrets_are_redacted_before_sealing(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, ws = incident
    out = _run(cli, "leaks_secret", incident_id, "--target", str(sandbox))
    assert out["redactions"] == {"aws-access-key-id": 1}
    text = (ws / out["notebook"]).read_text()
    assert "AKIAABCDEFGHIJKLMNOP" not in text and "[REDACTED:aws-access-key-id]" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("RBK-catalog-../../etc",), "invalid runbook id"),
        (("../runbooks/x",), "not found"),
        (("RBK-catalog-does-not-exist",), "unknown runbook"),
        ((str(NOTEBOOKS / "malformed.ipynb"),), "not a readable notebook"),
        ((str(NOTEBOOKS / "no_parameters.ipynb"),), "no cell tagged 'parameters'"),
        ((CHECKSUM, "-p", "bogus=1"), "unknown parameter 'bogus'"),
        ((CHECKSUM, "--timeout", "0"), "positive number of seconds"),
        ((CHECKSUM, "--target", "/nonexistent/target.yaml"), "target file"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(
    cli: Cli,
    incident: tuple[str, Path],
    args: tuple[str, ...],
    message: str,
) -> None:
    incident_id, ws = incident
    before = _evidence_names(ws)
    result = cli("run", *args, "--incident", incident_id)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert _evidence_names(ws) == before


def test_malformed_params_file(cli: Cli, incident: tuple[str, Path], tmp_path: Path) -> None:
    incident_id, ws = incident
    bad = tmp_path / "params.yaml"
    bad.write_text("limit: [1, 2\n")
    result = cli(
        "run", str(NOTEBOOKS / "echo_params.ipynb"), "--incident", incident_id, "-f", str(bad)
    )
    assert result.exit_code == 2 and "not valid YAML" in result.stderr
    assert len(ledger.check(ws / "10_evidence/ledger.jsonl").entries) == 1


def test_traversal_in_incident_id_writes_nothing(cli: Cli, root: Path, tmp_path: Path) -> None:
    result = cli("run", CHECKSUM, "--incident", "../../escape")
    assert result.exit_code == 2 and "invalid incident id" in result.stderr
    assert not (tmp_path / "escape").exists()


def test_missing_kernel_is_a_one_line_fix(incident: tuple[str, Path], sandbox: Path) -> None:
    incident_id, ws = incident
    with pytest.raises(
        KernelMissingError,
        match=r"kernel 'no-such-kernel' is not installed: run `\S*kfm-runbook kernel install "
        r"--sys-prefix`$",
    ):
        run_runbook(RunOptions(CHECKSUM, incident_id, target=sandbox, kernel_name="no-such-kernel"))
    assert len(ledger.check(ws / "10_evidence/ledger.jsonl").entries) == 1


def test_default_target_is_the_builtin_sandbox(
    cli: Cli, incident: tuple[str, Path], tmp_path: Path
) -> None:
    incident_id, _ = incident
    out = _run(cli, CHECKSUM, incident_id)
    assert out["_exit"] == 1 and out["findings"] == 3
    assert (tmp_path / "default-sandbox" / "target.yaml").is_file()


# --- issue 11: the runner decides the mode; the ledger decides the outcome ---------------


def test_a_cell_setting_apply_before_start_changes_nothing(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, ws = incident
    out = _run(cli, "sets_apply_before_start", incident_id, "--target", str(sandbox))
    assert out["_exit"] == 3 and out["outcome"] == "errored", out
    assert "the runner started" in out["detail"] and "read-only" in out["detail"]
    assert not (sandbox.parent / "changed-by-sets-apply").exists()
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    assert [e for e in entries if e["kind"] == "action"] == []
    started = next(e for e in entries if e["kind"] == "run.started")
    assert started["data"]["apply"] is False and started["data"]["parameters"]["apply"] is False


def test_outcome_comes_from_the_ledger_not_from_scraps_in_the_notebook(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, ws = incident
    out = _run(cli, "forges_a_passing_scrap", incident_id, "--target", str(sandbox))
    book = scrapbook.read_notebook(str(ws / out["notebook"]))
    assert book.scraps["kfm.check.digests"].data["status"] == "PASS"  # what the file claims
    assert out["outcome"] == "failed" and out["_exit"] == 1  # what the ledger saw
    assert {c["name"]: c["status"] for c in out["checks"]} == {"digests": "FAIL"}
