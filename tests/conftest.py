"""Shared fixtures: an isolated incident root, sandboxes, the CLI in-process and as a process."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kfm_runbooks.cli import main

ROOT = Path(__file__).resolve().parents[1]


# xdist work units. pytest-xdist's own `loadgroup` cannot see `xdist_group` marks under
# pytest 9 (it renames `item._nodeid`, which pytest 9 no longer reads), so tests sharing an
# expensive fixture were split across workers and built it twice. The scheduler below groups
# by nodeid alone, on the controller: a module that shares a module-scoped fixture (a live
# sandbox, an installed wheel) runs whole on one worker, a golden replay batch
# (`[...|golden-batch-N]`) in one process; every other test is spread on its own.
_SHARES_A_MODULE_FIXTURE = re.compile(r"""scope=["']module["']|\blive_sandbox\b""")
_BATCH = re.compile(r"\|(golden-batch-\d+)\]$")


@functools.cache
def _shares_a_module_fixture(module: str) -> bool:
    try:
        return bool(_SHARES_A_MODULE_FIXTURE.search((ROOT / module).read_text()))
    except OSError:
        return False


def xdist_scope(nodeid: str) -> str:
    """The work unit a test belongs to (tests of one unit run in one worker, in order)."""
    batch = _BATCH.search(nodeid)
    if batch:
        return batch.group(1)
    module = nodeid.split("::", 1)[0]
    return module if _shares_a_module_fixture(module) else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return Scheduling(config, log)


NOTEBOOKS = ROOT / "tests" / "notebooks"
KFM_SAMPLE = ROOT / "tests" / "kfm_sample"
CHECKSUM = "RBK-catalog-checksum-mismatch"
KFM_BIN = Path(sys.executable).parent / "kfm-runbook"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private incident root and default sandbox; KFM_ACTOR fixed."""
    incidents = tmp_path / "incidents"
    monkeypatch.setenv("KFM_INCIDENT_ROOT", str(incidents))
    monkeypatch.setenv("KFM_SANDBOX_DIR", str(tmp_path / "default-sandbox"))
    monkeypatch.setenv("KFM_ACTOR", "tester")
    monkeypatch.setenv("KFM_SIGNING_KEY", "")  # unsigned unless a test signs (restored after)
    return incidents


Cli = Callable[..., Result]


@pytest.fixture
def cli(root: Path) -> Cli:
    """Invoke kfm-runbook in-process: cli("incident", "list")."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def kfm(root: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed kfm-runbook as a real process."""

    def run(
        *args: str, cwd: Path | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KFM_BIN), *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=os.environ.copy(),
            timeout=timeout,
        )

    return run


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A fresh faulty sandbox; returns its target.yaml."""
    from kfm_runbooks.sandbox import create_sandbox

    return create_sandbox(tmp_path / "sandbox")


@pytest.fixture
def clean_sandbox(tmp_path: Path) -> Path:
    from kfm_runbooks.sandbox import create_sandbox

    return create_sandbox(tmp_path / "clean-sandbox", clean=True)


@pytest.fixture
def incident(cli: Cli, root: Path) -> tuple[str, Path]:
    """A new incident: (id, workspace path)."""
    result = cli("incident", "new", "--title", "Test incident", "--severity", "Sev2")
    assert result.exit_code == 0, result.output
    incident_id = result.stdout.strip()
    return incident_id, root / incident_id


@pytest.fixture(scope="session")
def sealed_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One real checksum run, sealed, made once; tests copy it (see `sealed`)."""
    from kfm_runbooks.execute import RunOptions, run_runbook
    from kfm_runbooks.sandbox import create_sandbox
    from kfm_runbooks.workspace import create_incident

    base = tmp_path_factory.mktemp("sealed")
    target = create_sandbox(base / "sandbox")
    workspace = create_incident("Sealed template", "Sev1", root=base / "incidents", actor="tester")
    result = run_runbook(
        RunOptions(
            CHECKSUM,
            workspace.incident_id,
            root=base / "incidents",
            target=target,
            apply=True,
            quiet=True,
            actor="tester",
        )
    )
    assert result.outcome == "passed", result.detail
    assert all(c["coverage"]["examined"] == c["coverage"]["in_scope"] > 0 for c in result.checks)
    return workspace.incident_id, workspace.path


@pytest.fixture
def sealed(sealed_template: tuple[str, Path], root: Path) -> tuple[str, Path]:
    """A private copy of the sealed workspace under this test's root."""
    incident_id, source = sealed_template
    dest = root / incident_id
    shutil.copytree(source, dest)
    return incident_id, dest


def sha256sum_check(workspace: Path) -> subprocess.CompletedProcess[str]:
    """The real coreutils `sha256sum -c` in 10_evidence."""
    return subprocess.run(
        ["sha256sum", "--strict", "-c", "hashes.sha256"],
        cwd=workspace / "10_evidence",
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def live_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A sandbox with its live side up (API + PostgreSQL) for one test module; yields its
    target.yaml. Always brought down, also when a test fails. Switch faults with
    `kfm_runbooks.sandbox.services.supervisor.fault(target.parent, NAME, on)` and switch
    them off again."""
    from kfm_runbooks.sandbox import create_sandbox
    from kfm_runbooks.sandbox.services import supervisor

    target = create_sandbox(tmp_path_factory.mktemp("live") / "sandbox")
    try:
        supervisor.up(target.parent, owner=os.getpid())
        yield target
    finally:
        supervisor.down(target.parent)
