"""The three infra runbooks against the live sandbox (real kernels, real services).

Per runbook: with its fault on, triage finds it and the run exits 1; `--apply` fixes the
running system (exit 0) and a second `--apply` changes nothing; `kfm-runbook rollback`
brings the fault's state back (checked on the system itself); with the fault off the run
passes (exit 0). Every test leaves the shared sandbox as it found it (fault off).
Also: `sandbox up` started what this domain needs, and `down` leaves nothing mounted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks.checks.infra import backup as infra_backup
from kfm_runbooks.checks.infra import disk as infra_disk
from kfm_runbooks.checks.infra import tls as infra_tls
from kfm_runbooks.checks.infra.config import InfraConfig
from kfm_runbooks.sandbox.services import supervisor
from kfm_runbooks.target import load_target

from .conftest import Cli, sha256sum_check
from .helpers import applied_actions as _actions
from .helpers import finding_codes as _codes
from .helpers import run_json as _run

pytestmark = pytest.mark.slow


@pytest.fixture
def faulty(live_sandbox: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """The live sandbox with the test's fault on (param), switched off afterwards."""
    name = request.param
    supervisor.fault(live_sandbox.parent, name, True)
    try:
        yield live_sandbox
    finally:
        supervisor.fault(live_sandbox.parent, name, False)


def _cycle(
    cli: Cli,
    runbook: str,
    incident: tuple[str, Path],
    target: Path,
    codes: list[str],
    rollback: bool = True,
) -> list[dict[str, Any]]:
    """Fault found (exit 1); apply fixes (exit 0); a second apply changes nothing; every
    applied step rolls back (when its steps record an undo)."""
    incident_id, ws = incident
    triage = _run(cli, runbook, incident_id, target)
    assert triage["_exit"] == 1 and triage["outcome"] == "failed", triage
    assert _codes(ws, triage) == codes
    fixed = _run(cli, runbook, incident_id, target, "--apply")
    assert fixed["_exit"] == 0 and set(fixed["statuses"].values()) == {"PASS"}, fixed
    applied = _actions(ws)
    assert applied and all(a["ok"] for a in applied)
    again = _run(cli, runbook, incident_id, target, "--apply")
    assert again["_exit"] == 0 and _actions(ws) == applied  # idempotent: nothing new
    for action in reversed(applied if rollback else []):
        result = cli("rollback", incident_id, action["action_id"], "--apply", "--json")
        assert result.exit_code == 0, result.output
    assert sha256sum_check(ws).returncode == 0
    return applied


def _passes(cli: Cli, runbook: str, incident_id: str, target: Path) -> None:
    clean = _run(cli, runbook, incident_id, target)
    assert clean["_exit"] == 0 and set(clean["statuses"].values()) == {"PASS"}, clean


def test_up_started_the_infra_side(live_sandbox: Path) -> None:
    state = supervisor.read_state(live_sandbox.parent)
    assert state is not None
    assert state["tls"]["url"].startswith("https://127.0.0.1:")
    assert state["backup"]["ok"] is True
    if os.geteuid() == 0:
        assert state["data_volume"]["mounted"] is True
        assert os.path.ismount(state["data_volume"]["path"])


@pytest.mark.parametrize("faulty", ["disk-pressure"], indirect=True)
def test_disk_pressure(cli: Cli, incident: tuple[str, Path], faulty: Path) -> None:
    state = supervisor.read_state(faulty.parent) or {}
    if not state.get("data_volume", {}).get("mounted"):
        pytest.skip(f"no own data volume: {state.get('data_volume', {}).get('reason')}")
    applied = _cycle(
        cli,
        "RBK-infra-disk-pressure",
        incident,
        faulty,
        ["INFRA_DISK_INODES_LOW", "INFRA_DISK_SPACE_LOW"],
    )
    assert [a["undo"]["op"] for a in applied] == ["infra.restore_reclaimed"] * 2
    assert [a["result"]["files"] for a in applied] == [400, 6]
    config = InfraConfig.from_target(load_target(faulty))
    data = infra_disk.assess(infra_disk.volumes(config)[0])
    assert {infra_disk.SPACE_LOW, infra_disk.INODES_LOW} <= {f.code for f in data.findings}
    assert len(data.candidates) == 406  # every file back, byte-identical (restore checks sha256)


@pytest.mark.parametrize("faulty", ["cert-expiry"], indirect=True)
def test_cert_expiry(cli: Cli, incident: tuple[str, Path], faulty: Path) -> None:
    pid = (supervisor.read_state(faulty.parent) or {})["api"]["pid"]
    applied = _cycle(cli, "RBK-infra-cert-expiry", incident, faulty, ["INFRA_TLS_CERT_EXPIRING"])
    assert [a["undo"]["op"] for a in applied] == ["infra.reinstall_certificate"]
    assert applied[0]["result"]["served"] is True  # picked up without a restart ...
    assert (supervisor.read_state(faulty.parent) or {})["api"]["pid"] == pid  # ... same process
    probe = infra_tls.probe(infra_tls.TLSConfig.from_target(load_target(faulty)))
    assert [f.code for f in probe.findings] == ["INFRA_TLS_CERT_EXPIRING"]  # rolled back


@pytest.mark.parametrize("faulty", ["backup-failure"], indirect=True)
def test_backup_failure(cli: Cli, incident: tuple[str, Path], faulty: Path) -> None:
    """The fault (job pointed at an unmounted volume, history 30 h old) is found from the
    dumps' age and the job's records; --apply acts through the target's commands (the
    sandbox's admin operations), and the new dump is read whole."""
    applied = _cycle(
        cli,
        "RBK-infra-backup-failure",
        incident,
        faulty,
        ["INFRA_BACKUP_LAST_RUN_FAILED", "INFRA_BACKUP_STALE"],
        rollback=False,
    )
    assert [a["command"] for a in applied] == [
        "live/bin/kfm-sandbox-admin backup_fix",
        "live/bin/kfm-sandbox-admin backup_run",
    ]
    assert [a["undo"] for a in applied] == [None, None]  # a new dump only adds a file
    assert {"public.counties", "public.observations"} <= set(applied[1]["result"]["toc_tables"])
    config = infra_backup.BackupConfig.from_target(load_target(faulty))
    report = infra_backup.assess(config)
    assert report.newest is not None and report.newest.name == applied[1]["result"]["file"]
    proof = infra_backup.verify_restore(config, report)
    assert proof.status == "PASS" and proof.drill is not None
    assert proof.drill.counts["public.counties"] == 105
    assert proof.drill.counts["public.observations"] == 200000


@pytest.mark.parametrize(
    "runbook", ["RBK-infra-disk-pressure", "RBK-infra-cert-expiry", "RBK-infra-backup-failure"]
)
def test_no_fault_passes(
    cli: Cli, incident: tuple[str, Path], live_sandbox: Path, runbook: str
) -> None:
    state = supervisor.read_state(live_sandbox.parent) or {}
    if runbook == "RBK-infra-disk-pressure" and not state["data_volume"]["mounted"]:
        out = _run(cli, runbook, incident[0], live_sandbox)  # no own volume: never a PASS
        assert out["_exit"] == 1 and out["statuses"]["volume-data"] == "HOLD", out
        return
    _passes(cli, runbook, incident[0], live_sandbox)


def test_down_unmounts_the_data_volume(tmp_path: Path) -> None:
    from kfm_runbooks.sandbox import create_sandbox

    folder = create_sandbox(tmp_path / "sandbox").parent
    try:
        state = supervisor.up(folder, owner=os.getpid())
        mounted = bool(state["data_volume"]["mounted"])
        if mounted:
            supervisor.fault(folder, "disk-pressure", True)
    finally:
        supervisor.down(folder)
    data = Path(state["data_volume"]["path"])
    assert not os.path.ismount(data) and not data.exists()
    assert mounted or os.geteuid() != 0
