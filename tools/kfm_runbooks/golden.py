"""Golden notebooks: the regression harness for runbooks (pytest + nbval).

For every case in tests/golden/cases/<domain>.yaml (a runbook, a target, fixed parameters), a
golden executed notebook lives at tests/golden/<domain>/<runbook id>.<case>.ipynb, in the
runbook repository (paths.repository: this project's checkout, or a team's repository made
by `kfm-runbook init`). It is produced by papermill with the project kernel in a scratch
folder laid out like this::

    <scratch>/<golden>.ipynb
    <scratch>/sandbox/            fresh `sandbox create` (faulty, or clean)
    <scratch>/kfm_sample/         copy of tests/kfm_sample (KFM fixture cases)
    <scratch>/target/             copy of the folder of a `file:` target of the repository
    <scratch>/incidents/INC-20260101-001/   a fresh workspace

with parameters given as paths relative to <scratch>, so `pytest --nbval` can re-run the
stored cells in any folder rebuilt the same way. The golden records the sha256 of the
runbook it came from: when a runbook changes and its golden does not, the harness fails
and `make golden` regenerates it (review the diff: it is the behaviour change).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import paths
from . import runbook as runbook_mod
from ._fs import replace_atomic
from .errors import InputError, SetupError
from .workspace import create_incident

INCIDENT_ID = "INC-20260101-001"
METADATA_KEY = "kfm_golden"


@dataclass(frozen=True)
class Case:
    runbook: str
    case: str
    # "sandbox", "sandbox-clean", "kfm:<target file in tests/kfm_sample>",
    # "file:<target file, relative to the repository>" (its folder is copied), or
    # "live" / "live:<fault>[,<fault>...]": the sandbox with its services up, faults on
    target: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        domain = self.runbook.split("-")[1]
        return golden_dir() / domain / f"{self.runbook}.{self.case}.ipynb"


def golden_dir() -> Path:
    """tests/golden of the runbook repository (paths.golden_dir)."""
    return paths.golden_dir()


def sanitize_file() -> Path:
    """The nbval sanitizer: the repository's tests/golden/sanitize.cfg, else the packaged one."""
    return paths.golden_sanitizer()


def load_cases(folder: Path | None = None) -> list[Case]:
    """Every case of every tests/golden/cases/*.yaml file (runbook id -> list of cases)."""
    cases = []
    for path in sorted((folder or golden_dir() / "cases").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for runbook_id, entries in raw.items():
            for entry in entries:
                parameters = dict(entry.get("parameters") or {})
                cases.append(Case(runbook_id, entry["case"], entry["target"], parameters))
    return cases


def prepare(case: Case, scratch: Path) -> dict[str, Any]:
    """Lay out `scratch` for `case`; returns the papermill parameters (relative paths)."""
    from .sandbox import create_sandbox

    if case.target in ("sandbox", "sandbox-clean") or case.target.split(":")[0] == "live":
        create_sandbox(scratch / "sandbox", clean=case.target == "sandbox-clean")
        target = "sandbox/target.yaml"
    elif case.target.startswith("kfm:"):
        shutil.copytree(paths.kfm_sample(), scratch / "kfm_sample")
        target = f"kfm_sample/{case.target.removeprefix('kfm:')}"
    elif case.target.startswith("file:"):
        target = _copy_repository_target(case, scratch)
    else:
        raise InputError(f"golden case {case.runbook}/{case.case}: unknown target {case.target!r}")
    create_incident(
        f"Golden case {case.case} of {case.runbook}",
        "Sev3",
        root=scratch / "incidents",
        actor="golden",
        incident_id=INCIDENT_ID,
    )
    return {
        **case.parameters,
        "incident_id": INCIDENT_ID,
        "workspace": f"incidents/{INCIDENT_ID}",
        "target": target,
        "apply": False,
    }


def _copy_repository_target(case: Case, scratch: Path) -> str:
    """Copy the folder of a `file:` target (a path inside the repository) into scratch."""
    repository = paths.repository().path
    source = (repository / case.target.removeprefix("file:")).resolve()
    if not source.is_relative_to(repository) or not source.is_file():
        raise InputError(
            f"golden case {case.runbook}/{case.case}: target {case.target!r} must name a "
            f"target file inside the repository {repository}"
        )
    shutil.copytree(source.parent, scratch / "target")
    return f"target/{source.name}"


def live_faults(case: Case) -> list[str] | None:
    """The faults of a live case ([] for plain "live"), None when the case is not live."""
    kind, _, faults = case.target.partition(":")
    if kind != "live":
        return None
    return [f for f in faults.split(",") if f]


@contextmanager
def environment(case: Case, scratch: Path) -> Iterator[dict[str, Any]]:
    """Lay out the case and, for live cases, run its services (always stopped after)."""
    parameters = prepare(case, scratch)
    faults = live_faults(case)
    if faults is None:
        yield parameters
        return
    from .sandbox.services import supervisor

    folder = scratch / "sandbox"
    try:
        supervisor.up(folder, owner=os.getpid())  # never outlives this process
        for name in faults:
            supervisor.fault(folder, name, True)
        yield parameters
    finally:
        supervisor.down(folder)


def make(case: Case) -> Path:
    """Execute the case with papermill and store the golden notebook."""
    import nbformat
    import papermill

    from .kernel import KERNEL_NAME, ipc_kernel_manager_class

    book = runbook_mod.load(runbook_mod.find(case.runbook))
    with (
        tempfile.TemporaryDirectory(prefix="kfm-golden-") as tmp,
        environment(case, Path(tmp)) as parameters,
    ):
        scratch = Path(tmp)
        (scratch / "ipc").mkdir()
        out = scratch / "golden.ipynb"
        papermill.execute_notebook(
            str(book.path),
            str(out),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            cwd=str(scratch),
            progress_bar=False,
            kernel_manager_class=ipc_kernel_manager_class(scratch / "ipc"),
        )
        nb = nbformat.read(out, as_version=4)
    nb.metadata[METADATA_KEY] = {
        "runbook": case.runbook,
        "case": case.case,
        "target": case.target,
        "runbook_sha256": book.sha256,
        "parameters": parameters,
    }
    nb.metadata.get("papermill", {}).pop("input_path", None)
    nb.metadata.get("papermill", {}).pop("output_path", None)
    case.path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(case.path, nbformat.writes(nb).encode())
    return case.path


IGNORE_OUTPUT_TAG = "nbval-ignore-output"
# Numbered scraps (kfm.finding.NNNN, kfm.action.NNNN): each kind has its own counter.
_NUMBERED = {
    "finding": re.compile(r"\brun\.(finding|record_findings)\("),
    "action": re.compile(r"\brun\.action\("),
}


def volatile_order_problems(book: runbook_mod.Runbook) -> list[str]:
    """Cells whose compared scraps could be renumbered by an earlier ignored cell.

    A cell tagged nbval-ignore-output may record a timing-dependent number of findings or
    actions; every later compared cell recording the same kind would then get other scrap
    names (kfm.finding.0002 instead of 0001) and the golden would depend on the machine's
    speed. Record volatile findings after the deterministic ones.
    """
    problems = []
    ignored: dict[str, str] = {}
    for index, cell in enumerate(book.nb.cells):
        if cell.cell_type != "code":
            continue
        volatile = IGNORE_OUTPUT_TAG in cell.metadata.get("tags", [])
        for kind, pattern in _NUMBERED.items():
            if not pattern.search(cell.source):
                continue
            if volatile:
                ignored.setdefault(kind, f"cell {index} [{cell.get('id', '?')}]")
            elif kind in ignored:
                problems.append(
                    f"cell {index} [{cell.get('id', '?')}] records {kind}s after {ignored[kind]}, "
                    f"which is tagged {IGNORE_OUTPUT_TAG} and records {kind}s too: move the "
                    "volatile ones after the compared ones"
                )
    return problems


def uncovered(cases: list[Case]) -> list[str]:
    """Runbooks of the repository's own library that no golden case covers."""
    covered = {case.runbook for case in cases}
    paths.repository()  # refuses outside a runbook repository
    own = runbook_mod.discover(paths.top_library().path)
    return [path.stem for path in own if path.stem not in covered]


def stale_reason(case: Case) -> str | None:
    """Why the golden cannot be trusted as-is (missing, or made from another runbook)."""
    import nbformat

    if not case.path.is_file():
        return f"{case.path.name} is missing: run `kfm-runbook golden {case.runbook}`"
    recorded = nbformat.read(case.path, as_version=4).metadata.get(METADATA_KEY, {})
    current = runbook_mod.load(runbook_mod.find(case.runbook)).sha256
    if recorded.get("runbook_sha256") != current:
        return (
            f"{case.runbook} changed (sha256 {current[:12]}…) but its golden {case.path.name} "
            f"was made from {str(recorded.get('runbook_sha256'))[:12]}…: run `make golden` "
            f"(`kfm-runbook golden {case.runbook}`) and review the diff"
        )
    return None


@contextmanager
def stage(case: Case, scratch: Path) -> Iterator[Path]:
    """Rebuild the case's folder in `scratch` (services up for live cases), copy the golden
    in and yield its path; services are stopped when the block ends."""
    with environment(case, scratch):
        dest = scratch / case.path.name
        shutil.copyfile(case.path, dest)
        yield dest


# pytest + nbval in a fresh process, with the same deferral of a slow optional import
# (rfc3987_syntax, seconds per process) as the CLI, the worker and the kernel.
_PYTEST_DEFERRED = (
    "import sys\n"
    "from kfm_runbooks._speedups import defer_slow_optional_imports\n"
    "defer_slow_optional_imports()\n"
    "import pytest\n"
    "sys.exit(pytest.main(sys.argv[1:]))\n"
)


def nbval_argv(notebooks: list[Path], rootdir: Path, junit: Path | None = None) -> list[str]:
    """argv of one pytest + nbval process replaying `notebooks` (paths under `rootdir`, the
    process's working folder) with the golden sanitizer, isolated from any pytest config."""
    import sys

    return [
        sys.executable,
        "-c",
        _PYTEST_DEFERRED,
        "--nbval",
        *(str(n.relative_to(rootdir)) for n in notebooks),
        "--nbval-sanitize-with",
        str(sanitize_file()),
        "-p",
        "no:cacheprovider",
        "-q",
        "--no-header",
        "-o",
        "addopts=",
        "--rootdir",
        str(rootdir),
        *([f"--junitxml={junit}"] if junit else []),
    ]


def replay(case: Case, scratch: Path, timeout: float = 600.0) -> str | None:
    """Re-run the golden of `case` with nbval in a rebuilt folder: None when every cell's
    output matches, else nbval's report (the `golden --replay` of a runbook repository)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("nbval") is None:
        raise SetupError(
            "replaying goldens needs pytest and nbval: "
            f"`{sys.executable} -m pip install 'kfm-runbooks[golden]'`"
        )
    reason = stale_reason(case)
    if reason:
        return reason
    with stage(case, scratch) as notebook:
        done = subprocess.run(
            nbval_argv([notebook], scratch),
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    return None if done.returncode == 0 else done.stdout[-4000:] or done.stderr[-4000:]
