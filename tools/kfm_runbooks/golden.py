"""Golden notebooks: the regression harness for runbooks (pytest + nbval).

For every case in tests/golden/cases/<domain>.yaml (a runbook, a target, fixed parameters), a
golden executed notebook lives at tests/golden/<domain>/<runbook id>.<case>.ipynb. It is
produced by papermill with the project kernel in a scratch folder laid out like this::

    <scratch>/<golden>.ipynb
    <scratch>/sandbox/            fresh `sandbox create` (faulty, or clean)
    <scratch>/kfm_sample/         copy of tests/kfm_sample (KFM fixture cases)
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

from . import runbook as runbook_mod
from ._fs import replace_atomic
from .errors import InputError
from .workspace import create_incident

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = PROJECT_ROOT / "tests" / "golden"
CASES_DIR = GOLDEN_DIR / "cases"
SANITIZE_FILE = GOLDEN_DIR / "sanitize.cfg"
KFM_SAMPLE = PROJECT_ROOT / "tests" / "kfm_sample"
INCIDENT_ID = "INC-20260101-001"
METADATA_KEY = "kfm_golden"


@dataclass(frozen=True)
class Case:
    runbook: str
    case: str
    # "sandbox", "sandbox-clean", "kfm:<target file in tests/kfm_sample>", or
    # "live" / "live:<fault>[,<fault>...]": the sandbox with its services up, faults on
    target: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        domain = self.runbook.split("-")[1]
        return GOLDEN_DIR / domain / f"{self.runbook}.{self.case}.ipynb"


def load_cases(folder: Path = CASES_DIR) -> list[Case]:
    """Every case of every tests/golden/cases/*.yaml file (runbook id -> list of cases)."""
    cases = []
    for path in sorted(folder.glob("*.yaml")):
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
        shutil.copytree(KFM_SAMPLE, scratch / "kfm_sample")
        target = f"kfm_sample/{case.target.removeprefix('kfm:')}"
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
    from .live import supervisor

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


def stale_reason(case: Case) -> str | None:
    """Why the golden cannot be trusted as-is (missing, or made from another runbook)."""
    import nbformat

    if not case.path.is_file():
        return f"{case.path.name} is missing: run `make golden`"
    recorded = nbformat.read(case.path, as_version=4).metadata.get(METADATA_KEY, {})
    current = runbook_mod.load(runbook_mod.find(case.runbook)).sha256
    if recorded.get("runbook_sha256") != current:
        return (
            f"{case.runbook} changed (sha256 {current[:12]}…) but its golden {case.path.name} "
            f"was made from {str(recorded.get('runbook_sha256'))[:12]}…: run `make golden` and "
            "review the diff"
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
