"""The four security runbooks through the CLI, papermill and the real project kernel
(verdicts of read-only runs on a golden case's target come from that golden: `golden_run`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import scrapbook

from kfm_runbooks.checks.security import access as security_access
from kfm_runbooks.checks.security import layers as security_layers
from kfm_runbooks.checks.security import leaks as security_secrets
from kfm_runbooks.checks.security import supply as security_supply
from kfm_runbooks.sandbox.parts.security_secrets import fake_credentials
from kfm_runbooks.target import load_target

from .conftest import KFM_SAMPLE, ROOT, Cli, sha256sum_check
from .helpers import applied_actions as _actions
from .helpers import golden_run
from .helpers import run_json as _run

pytestmark = pytest.mark.slow


def _codes(ws: Path, out: dict[str, Any]) -> list[str]:
    """Distinct finding codes of the run (info included)."""
    book = scrapbook.read_notebook(str(ws / out["notebook"]))
    return sorted(
        {s.data["code"] for name, s in book.scraps.items() if name.startswith("kfm.finding.")}
    )


SECRETS = "RBK-security-secret-exposure"
SUPPLY = "RBK-security-supply-chain"
ACCESS = "RBK-security-unauthorized-access"
LAYERS = "RBK-security-sensitive-layer-exposure"


def _fault_present(runbook: str, target: Path) -> bool:
    """The fault, judged by the checks module directly (no kernel)."""
    loaded = load_target(target)
    if runbook == SECRETS:
        return bool(
            security_secrets.scan(security_secrets.SecretsConfig.from_target(loaded)).exposures
        )
    if runbook == SUPPLY:
        return not security_supply.scan(security_supply.EnvConfig.from_target(loaded)).clean
    if runbook == ACCESS:
        config = security_access.AccessConfig.from_target(loaded)
        offenders = {o.key for o in security_access.scan(config).offenders}
        return bool(offenders - security_access.blocked(config))
    return bool(
        security_layers.scan(security_layers.LayersConfig.from_target(loaded)).to_withhold()
    )


def _assert_no_secret_value_in(ws: Path, sandbox: Path) -> None:
    """Not in the sealed notebooks, evidence, actions, ledger: only fingerprints."""
    evidence = b"".join(p.read_bytes() for p in ws.rglob("*") if p.is_file())
    for value in fake_credentials().values():
        assert value.encode() not in evidence
    assert b"fp:" in evidence
    quarantine = sandbox.parent / "security/secrets/.quarantine"
    assert len(list(quarantine.glob("*/original"))) == 2  # the originals stay in the target


FAULTY = {
    SECRETS: ["SEC_SECRET_EXPOSED"],
    SUPPLY: ["SEC_PKG_FILE_TAMPERED", "SEC_PKG_VERSION_DRIFT"],
    ACCESS: [
        "SEC_ACCESS_DENIED_BURST",
        "SEC_ACCESS_RESTRICTED_GRANTED",
        "SEC_ACCESS_TOKEN_MULTI_IP",
    ],
    LAYERS: [
        "SEC_LAYER_FIELD_NOT_REDACTED",
        "SEC_LAYER_REDACTION_MISSING",
        "SEC_LAYER_RESOLUTION_EXCEEDS_POLICY",
    ],
}


@pytest.mark.parametrize("runbook", list(FAULTY))
def test_fault_then_containment_then_nothing_left(
    cli: Cli, incident: tuple[str, Path], sandbox: Path, runbook: str
) -> None:
    incident_id, ws = incident
    triage = _run(cli, runbook, incident_id, sandbox)
    assert triage["_exit"] == 1 and triage["outcome"] == "failed", triage["_stderr"][-2000:]
    assert _codes(ws, triage) == FAULTY[runbook]
    assert _fault_present(runbook, sandbox)
    assert _actions(ws) == []  # without --apply nothing changed

    contained = _run(cli, runbook, incident_id, sandbox, "--apply")
    assert contained["_exit"] == 0 and contained["outcome"] == "passed", contained["_stderr"][
        -2000:
    ]
    assert not _fault_present(runbook, sandbox)
    applied = _actions(ws)
    assert applied and all(a["ok"] and a["undo"] for a in applied)

    again = _run(cli, runbook, incident_id, sandbox, "--apply")
    assert again["_exit"] == 0 and again["outcome"] == "passed"
    assert _actions(ws) == applied  # idempotent: the second apply changed nothing

    for out in (triage, contained, again):
        assert out["redactions"] == {}  # no runbook ever printed anything credential-shaped
    if runbook == SECRETS:
        _assert_no_secret_value_in(ws, sandbox)
    assert cli("verify", incident_id, "--expect-head", again["ledger_head"]).exit_code == 0
    assert sha256sum_check(ws).returncode == 0

    # Undo every applied step (newest first): the fault is back.
    for action in reversed(applied):
        undone = cli("rollback", incident_id, action["action_id"], "--apply")
        assert undone.exit_code == 0, undone.output
    assert _fault_present(runbook, sandbox)


@pytest.mark.parametrize("runbook", list(FAULTY))
def test_clean_sandbox_passes_all_four(runbook: str) -> None:
    out = golden_run(runbook, "sandbox-clean")  # golden_run: why no kernel run is needed
    assert set(out["statuses"].values()) == {"PASS"} and out["codes"] == [], out["statuses"]


def test_kfm_secret_fixtures_through_the_runbook(
    cli: Cli, incident: tuple[str, Path], tmp_path: Path
) -> None:
    incident_id, ws = incident
    shutil.copytree(KFM_SAMPLE, tmp_path / "kfm")
    target = tmp_path / "kfm/security_secret_exposure.target.yaml"
    triage = _run(cli, SECRETS, incident_id, target)
    assert triage["_exit"] == 1 and triage["outcome"] == "failed"  # KFM: both are "invalid"
    assert _codes(ws, triage) == [
        "OCCURRENCE_RETRIEVAL_QUERY_SECRET_VALUE_DENIED",
        "SECRET_PERSISTENCE_DENIED",
    ]
    book = scrapbook.read_notebook(str(ws / triage["notebook"]))
    files = {row["file"].rsplit("/", 1)[-1] for row in book.scraps["kfm.table.exposures"].data}
    assert files == {
        "semantic_invalid_secret_value.json",
        "semantic_invalid_secret_persistence.json",
    }
    contained = _run(cli, SECRETS, incident_id, target, "--apply")
    assert contained["_exit"] == 0 and contained["outcome"] == "passed", contained["_stderr"][
        -2000:
    ]


def test_kfm_layers_through_the_runbook() -> None:
    out = golden_run(LAYERS, "kfm-layers")
    rows = out["scraps"]["kfm.table.kfm_expected"]
    in_scope = [r for r in rows if r["in_scope"]]
    assert len(rows) == 16 and len(in_scope) == 8 and all(r["match"] for r in in_scope)
    assert out["scraps"]["kfm.metric.kfm_cases_matched"]["value"] == 8
    assert out["statuses"] == {
        "no-sensitive-exposure": "FAIL",
        "layers-labelled": "FAIL",
        "policy-verifiable": "HOLD",  # KFM's policy file is a placeholder: never PASS
    }


def test_supply_chain_on_this_projects_venv(
    cli: Cli, incident: tuple[str, Path], tmp_path: Path
) -> None:
    """The real thing: this project's .venv against requirements/constraints.txt."""
    incident_id, ws = incident
    site = ROOT / ".venv/lib/python3.11/site-packages"
    target = tmp_path / "venv.target.yaml"
    target.write_text(
        "name: kfm-runbooks-venv\nkind: live\nsecurity_environment:\n"
        f"  site_packages: {site}\n  lock: {ROOT / 'requirements/constraints.txt'}\n"
        "  allow_unpinned: [pip, setuptools, kfm-runbooks]\n"
        "  untrusted_flag: flag/KFM_ENV_UNTRUSTED.json\n"
    )
    expected = security_supply.scan(security_supply.EnvConfig.from_target(load_target(target)))
    out = _run(cli, SUPPLY, incident_id, target)
    assert out["outcome"] == ("passed" if expected.clean else "failed"), out["_stderr"][-2000:]
    book = scrapbook.read_notebook(str(ws / out["notebook"]))
    table = book.scraps["kfm.table.distributions"].data
    assert len(table) == len(expected.dists) > 100
    assert sum(r["files_verified"] for r in table) == sum(d.files_verified for d in expected.dists)
    assert not (tmp_path / "flag").exists()  # read-only run: nothing written next to it


def test_fault_oracle_judges_the_clean_sandbox_clean(tmp_path: Path) -> None:
    """Guard for `_fault_present` above: it must not see faults where there are none."""
    from kfm_runbooks.sandbox import create_sandbox

    clean = create_sandbox(tmp_path / "clean", clean=True)
    assert not any(_fault_present(runbook, clean) for runbook in FAULTY)
