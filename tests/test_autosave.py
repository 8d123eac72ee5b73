"""The executed notebook is saved at a bounded rate, not at every cell (run time stays
linear in the number of cells), and the evidence is still complete: every cell's output
at the end, and output up to a recent point when the run is killed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from kfm_runbooks import ledger

from .conftest import KFM_BIN, ROOT

pytestmark = pytest.mark.slow

_CELLS = ("parameters", "setup")
# The parameters and setup cells every runbook starts with, from the library's template
_TEMPLATE = nbformat.read(ROOT / "runbooks/TEMPLATE_runbook.ipynb", as_version=4)
PARAMETERS, SETUP = (next(c.source for c in _TEMPLATE.cells if c.id == i) for i in _CELLS)


def _notebook(path: Path, cells: int, tail: list[str], *, setup: bool = True) -> Path:
    body = [
        new_code_cell(PARAMETERS, id="parameters", metadata={"tags": ["parameters"]}),
        *([new_code_cell(SETUP, id="setup")] if setup else []),
        *(new_code_cell(f"print('output of cell {n}')", id=f"cell-{n}") for n in range(cells)),
        *(new_code_cell(source, id=f"tail-{i}") for i, source in enumerate(tail)),
    ]
    nb = new_notebook(cells=body)
    nb.metadata = {
        "kernelspec": {"display_name": "KFM Runbook", "language": "python", "name": "kfm-runbook"},
        "kfm_runbook": {"id": "RBK-test-many-cells", "title": "many cells", "version": "0.0.1"},
    }
    nbformat.write(nb, path)
    return path


def _outputs(nb: nbformat.NotebookNode) -> set[str]:
    return {
        line
        for cell in nb.cells
        for output in cell.get("outputs", [])
        for line in "".join(output.get("text", "")).splitlines()
    }


def test_saves_are_bounded_by_time_not_by_cells(tmp_path: Path) -> None:
    """The real worker on 300 cells with a long save interval: the notebook is written
    when it starts and when it ends, not 600 times - and every cell's output is there."""
    cells = 300
    source = _notebook(tmp_path / "many.ipynb", cells, [], setup=False)
    private = tmp_path / "private"
    private.mkdir()
    request = {
        "input": str(source),
        "output": "out.ipynb",
        "cwd": str(tmp_path),
        "parameters": {},
        "kernel_name": "kfm-runbook",
        "private_dir": str(private),
        "pid_file": str(private / "kernel.pid"),
        "status_file": str(private / "status.json"),
        "env": {"JUPYTER_PLATFORM_DIRS": "1"},
        "save_interval": 3600,
    }
    (private / "request.json").write_text(json.dumps(request))
    subprocess.run(
        [sys.executable, "-m", "kfm_runbooks._worker", str(private / "request.json")],
        check=True,
        timeout=600,
        capture_output=True,
    )
    status = json.loads((private / "status.json").read_text())
    assert status["status"] == "completed"
    assert status["saves"] == 2, status  # notebook start and end
    assert status["saves_deferred"] >= 1
    written = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert {f"output of cell {n}" for n in range(cells)} <= _outputs(written)


def _saved_outputs(ws: Path) -> set[str]:
    """Outputs in the run's in-progress notebook as it is on disk right now."""
    for partial in ws.glob("10_evidence/runs/.*.partial.ipynb"):
        try:
            return _outputs(nbformat.reads(partial.read_text(), as_version=4))
        except (OSError, ValueError):
            pass  # between two saves, or mid-write (papermill writes in place)
    return set()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_a_run_killed_mid_way_keeps_its_output_up_to_a_recent_point(
    incident: tuple[str, Path], sandbox: Path, tmp_path: Path
) -> None:
    """The worker is killed (no final save) while a long cell runs: the sealed evidence
    still holds the output of every cell before it."""
    incident_id, ws = incident
    started = tmp_path / "long-cell-started"
    source = _notebook(
        tmp_path / "killed.ipynb",
        60,
        [f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(600)"],
    )
    runner = subprocess.Popen(
        [str(KFM_BIN), "run", str(source), "--incident", incident_id, "--target", str(sandbox)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 300  # a bound on waiting, not an assertion on speed
        while time.monotonic() < deadline:
            if started.exists() and "output of cell 59" in _saved_outputs(ws):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the output of the cells before the long one never reached the disk")
        workers = _children(runner.pid)
        kernels = [k for w in workers for k in _children(w)]
        for pid in workers + kernels:  # the worker first: it must not get to save again
            _kill(pid)
        assert runner.wait(timeout=300) != 0
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    sealed = [e for e in entries if e["kind"] == "run"][-1]["data"]
    assert sealed["outcome"] in ("kernel-died", "interrupted", "aborted"), sealed
    notebook = next(o["path"] for o in sealed["outputs"] if o["path"].endswith(".ipynb"))
    evidence = nbformat.read(ws / "10_evidence" / notebook, as_version=4)
    assert {f"output of cell {n}" for n in range(60)} <= _outputs(evidence)
