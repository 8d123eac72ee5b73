"""Kills: a runner stopped by a signal, or killed outright, and a kill in the middle of a seal.

The waits below only guard against a hang (they fail a test that would otherwise block);
nothing asserts how fast anything happens.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks import ledger, verify

from .conftest import KFM_BIN, NOTEBOOKS, Cli, sha256sum_check

pytestmark = pytest.mark.slow
HANG_GUARD_S = 600.0  # generous: a loaded CI machine starts kernels slowly


def _until(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting: {what}")


def _tail(folder: Path) -> str:
    return (folder / "runner.log").read_text()[-2000:]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stream:
            state = stream.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stream:
        return int(stream.read().rsplit(")", 1)[1].split()[1])


def _entries(ws: Path) -> list[dict[str, Any]]:
    return ledger.check(ws / "10_evidence/ledger.jsonl").entries


@pytest.fixture
def runner(
    incident: tuple[str, Path], sandbox: Path, tmp_path: Path
) -> Iterator[Callable[[], tuple[subprocess.Popen[str], int, int, Path]]]:
    """Start `kfm-runbook run --apply` on waits_then_applies as a real process; returns
    (runner, worker pid, kernel pid, private TMPDIR) once its kernel is waiting."""
    incident_id, _ = incident
    # A private $TMPDIR, short: the kernel's Unix sockets live there (108-byte paths).
    scratch = Path(tempfile.mkdtemp(prefix="kfm-t-", dir="/tmp"))
    started: list[subprocess.Popen[str]] = []

    def start() -> tuple[subprocess.Popen[str], int, int, Path]:
        log = (tmp_path / "runner.log").open("w")
        proc = subprocess.Popen(
            [
                str(KFM_BIN),
                "run",
                str(NOTEBOOKS / "waits_then_applies.ipynb"),
                "--incident",
                incident_id,
                "--target",
                str(sandbox),
                "--apply",
            ],
            env={**os.environ, "TMPDIR": str(scratch)},
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        log.close()
        started.append(proc)
        pid_file = sandbox.parent / "kernel.pid"

        def kernel_pid() -> str:
            if proc.poll() is not None:
                raise AssertionError(f"runner exited {proc.returncode}: {_tail(tmp_path)}")
            return pid_file.read_text() if pid_file.is_file() else ""

        kernel = int(_until(kernel_pid, "kernel pid"))
        return proc, _parent(kernel), kernel, scratch

    yield start
    for proc in started:  # never leave a runner behind, whatever the test did
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (sandbox.parent / "go").write_text("go")  # releases a kernel that outlived its runner
    shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_are_handled_like_ctrl_c(
    cli: Cli,
    incident: tuple[str, Path],
    sandbox: Path,
    runner: Callable[[], tuple[subprocess.Popen[str], int, int, Path]],
    signum: int,
) -> None:
    incident_id, ws = incident
    proc, worker, kernel, scratch = runner()
    proc.send_signal(signum)
    assert proc.wait(timeout=HANG_GUARD_S) == 4  # aborted
    assert not _alive(kernel) and not _alive(worker)
    (sandbox.parent / "go").write_text("go")
    assert not (sandbox.parent / "applied-after-go").exists()
    run = _entries(ws)[-1]
    assert run["kind"] == "run" and run["data"]["outcome"] == "interrupted"
    assert signal.Signals(signum).name in run["data"]["detail"]
    assert list(scratch.iterdir()) == []  # no scratch folder left in $TMPDIR
    assert cli("verify", incident_id).exit_code == 0


def test_sigkill_leaves_nothing_running_and_the_next_command_seals_it(
    cli: Cli,
    incident: tuple[str, Path],
    sandbox: Path,
    runner: Callable[[], tuple[subprocess.Popen[str], int, int, Path]],
) -> None:
    incident_id, ws = incident
    proc, worker, kernel, scratch = runner()
    proc.kill()
    proc.wait()
    _until(lambda: not _alive(worker) and not _alive(kernel), "worker and kernel to die")
    (sandbox.parent / "go").write_text("go")
    assert not (sandbox.parent / "applied-after-go").exists()
    assert [e["kind"] for e in _entries(ws)].count("run") == 0  # nobody sealed it yet

    note = cli("incident", "note", incident_id, "--impact", "unknown")  # the next command
    assert note.exit_code == 0, note.output
    [run] = [e for e in _entries(ws) if e["kind"] == "run"]
    assert run["data"]["outcome"] == "aborted" and "killed" in run["data"]["detail"]
    notebook = (
        ws
        / "10_evidence"
        / next(o["path"] for o in run["data"]["outputs"] if o["path"].endswith(".ipynb"))
    )
    assert "kernel.pid" in notebook.read_text()  # what ran before the kill is the evidence
    assert list(scratch.iterdir()) == []
    assert not list((ws / "10_evidence/runs").glob(".*"))
    assert sha256sum_check(ws).returncode == 0
    assert cli("verify", incident_id).exit_code == 0


class Killed(BaseException):
    """Stands for SIGKILL at one precise moment of a seal."""


def _kill_at_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    from kfm_runbooks import manifest

    real = manifest.append

    def append(path: Path, entries: list[tuple[str, str]]) -> None:
        if any(name.endswith(".ipynb") and name.startswith("runs/RUN-") for _, name in entries):
            raise Killed()
        real(path, entries)

    monkeypatch.setattr(manifest, "append", append)


def test_a_kill_while_sealing_is_finished_by_the_next_command(
    cli: Cli, incident: tuple[str, Path], sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Published into runs/ but no manifest line, no ledger entry yet: a torn seal, not a
    planted file; the next command finishes it."""
    from kfm_runbooks.execute import RunOptions, run_runbook

    incident_id, ws = incident
    with monkeypatch.context() as patch:
        _kill_at_manifest(patch)
        with pytest.raises(Killed):
            run_runbook(
                RunOptions(str(NOTEBOOKS / "passes.ipynb"), incident_id, target=sandbox, quiet=True)
            )
    report = verify.verify_workspace(incident_id)  # looks, changes nothing
    assert not report.ok
    assert not [p for p in report.problems if "unrecorded file" in p], report.problems
    assert any("interrupted" in p for p in report.problems), report.problems

    result = cli("verify", incident_id)  # a command: finishes the seal first
    assert result.exit_code == 0, result.stdout
    [run] = [e for e in _entries(ws) if e["kind"] == "run"]
    assert run["data"]["outcome"] == "passed" and run["data"]["recovered"] is True
    assert sha256sum_check(ws).returncode == 0
    assert "RBK-test-passes → passed" in (ws / "00_meta/timeline.md").read_text()


def test_a_torn_seal_whose_files_are_gone_is_named_not_guessed(
    cli: Cli, incident: tuple[str, Path], sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kfm_runbooks.execute import RunOptions, run_runbook

    incident_id, ws = incident
    with monkeypatch.context() as patch:
        _kill_at_manifest(patch)
        with pytest.raises(Killed):
            run_runbook(
                RunOptions(str(NOTEBOOKS / "passes.ipynb"), incident_id, target=sandbox, quiet=True)
            )
    notebook = next((ws / "10_evidence/runs").glob("RUN-*.ipynb"))
    notebook.unlink()
    result = cli("verify", incident_id, "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report
    assert any("torn by a kill" in w and notebook.name in w for w in report["warnings"])
    [torn] = [e for e in _entries(ws) if e["kind"] == "publish.torn"]
    assert torn["data"]["lost"] == [f"10_evidence/runs/{notebook.name}"]
    assert "run" not in [e["kind"] for e in _entries(ws)]  # a lost seal never counts as a run
