"""nbval regression: every golden re-runs green, is fresh, and really compares findings."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import nbformat
import pytest

from kfm_runbooks import golden

pytestmark = pytest.mark.slow
CASES = golden.load_cases()


def runbook_paths() -> list[Path]:
    from kfm_runbooks import runbook

    return runbook.discover()


def _nbval(*notebooks: Path, junit: Path | None = None) -> subprocess.CompletedProcess[str]:
    """One pytest process replaying `notebooks` (each in its own folder: nbval starts each
    notebook's kernel there), with the very argv of `kfm-runbook golden --replay`."""
    rootdir = Path(os.path.commonpath([str(n.parent) for n in notebooks]))
    return subprocess.run(
        golden.nbval_argv(list(notebooks), rootdir, junit),
        cwd=rootdir,
        capture_output=True,
        text=True,
        timeout=600 * len(notebooks),
    )


# Cases without live services replay in batches, one pytest process per batch (a process
# costs ~1.5 s CPU before its first cell); each batch stays on one xdist worker and every
# case is still its own test with its own verdict. Live cases replay one by one: each
# needs its own services up.
BATCH_SIZE = 8
OFFLINE = [c for c in CASES if golden.live_faults(c) is None]
BATCH_OF = {(c.runbook, c.case): i // BATCH_SIZE for i, c in enumerate(OFFLINE)}
_batches: dict[int, dict[str, str | None]] = {}


def _replay_batch(batch: int, scratch: Path) -> dict[str, str | None]:
    """Replay every case of `batch`; the failure text of each notebook (None = passed)."""
    cases = [c for c in OFFLINE if BATCH_OF[(c.runbook, c.case)] == batch]
    with contextlib.ExitStack() as stack:
        notebooks = [
            stack.enter_context(golden.stage(case, scratch / f"{i:02d}"))
            for i, case in enumerate(cases)
        ]
        return _replay(notebooks, scratch / "junit.xml")


def _replay(notebooks: list[Path], junit: Path) -> dict[str, str | None]:
    """One nbval process over `notebooks`; per notebook name, its failures (None = passed)."""
    done = _nbval(*notebooks, junit=junit)
    failures: dict[str, list[str]] = {n.name: [] for n in notebooks}
    # junit names a cell's notebook by its path with "/" as "." (e.g. "03.RBK-x.case.ipynb")
    by_class = {f"{n.parent.name}.{n.name}": n.name for n in notebooks}
    seen: set[str] = set()
    for testcase in ElementTree.parse(junit).iter("testcase"):
        name = by_class.get(testcase.get("classname") or "")
        if name is None:
            continue
        seen.add(name)
        for problem in [*testcase.iter("failure"), *testcase.iter("error")]:
            cell = testcase.get("name")
            failures[name].append(f"{cell}: {problem.get('message')}\n{problem.text}")
    results: dict[str, str | None] = {}
    for name, problems in failures.items():
        if name not in seen:
            problems.append(f"nbval never reported on {name}:\n{done.stdout[-3000:]}")
        results[name] = "\n".join(problems)[-4000:] if problems else None
    return results


def _golden_params() -> list[Any]:
    params = []
    for c in CASES:  # a batch's cases share one replay: one xdist unit (conftest.xdist_scope)
        batch = BATCH_OF.get((c.runbook, c.case))
        suffix = "" if batch is None else f"|golden-batch-{batch}"
        params.append(pytest.param(c, id=f"{c.runbook}.{c.case}{suffix}"))
    return params


@pytest.mark.parametrize("case", CASES, ids=[f"{c.runbook}.{c.case}" for c in CASES])
def test_golden_is_fresh(case: golden.Case) -> None:
    assert golden.stale_reason(case) is None, golden.stale_reason(case)


@pytest.mark.parametrize("case", _golden_params())
def test_golden_reruns_identically(
    case: golden.Case, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    batch = BATCH_OF.get((case.runbook, case.case))
    if batch is None:
        with golden.stage(case, tmp_path) as notebook:
            result = _nbval(notebook)
        assert result.returncode == 0, result.stdout[-4000:]
        return
    if batch not in _batches:
        _batches[batch] = _replay_batch(batch, tmp_path_factory.mktemp(f"golden-batch-{batch}"))
    failure = _batches[batch][case.path.name]
    assert failure is None, failure


def test_every_library_runbook_has_a_golden() -> None:
    from kfm_runbooks import runbook

    covered = {case.runbook for case in CASES}
    assert {p.stem for p in runbook.discover()} <= covered


@pytest.mark.parametrize("book", runbook_paths(), ids=lambda p: p.stem)
def test_volatile_cells_cannot_renumber_compared_findings(book: Path) -> None:
    from kfm_runbooks import runbook

    assert golden.volatile_order_problems(runbook.load(book)) == []


def test_the_volatile_order_rule_catches_a_renumbering_runbook(tmp_path: Path) -> None:
    from kfm_runbooks import runbook

    source = runbook.find("RBK-catalog-checksum-mismatch")
    nb = nbformat.read(source, as_version=4)
    triage = next(c for c in nb.cells if "triage" in c.metadata.get("tags", []))
    volatile = nbformat.v4.new_code_cell(
        'if measured_ms > 300:\n    run.finding("SLOW", "/x", message="timing-dependent")',
        id="volatile",
    )
    volatile.metadata["tags"] = ["triage", golden.IGNORE_OUTPUT_TAG]
    nb.cells.insert(nb.cells.index(triage), volatile)
    path = tmp_path / source.name
    nbformat.write(nb, path)
    problems = golden.volatile_order_problems(runbook.load(path))
    assert problems and "after cell" in problems[0] and "[volatile]" in problems[0]


def test_a_changed_finding_fails_the_harness(tmp_path: Path) -> None:
    """The sanitizer must not hide findings: alter one stored finding and nbval must fail."""
    case = next(
        c for c in CASES if (c.runbook, c.case) == ("RBK-catalog-checksum-mismatch", "sandbox")
    )
    with golden.stage(case, tmp_path) as staged:
        _alter_and_check(staged)


def test_a_changed_finding_fails_only_its_own_case_in_a_batch(tmp_path: Path) -> None:
    altered, other = (
        next(c for c in OFFLINE if (c.runbook, c.case) == key)
        for key in (
            ("RBK-catalog-checksum-mismatch", "sandbox"),
            ("RBK-catalog-checksum-mismatch", "sandbox-clean"),
        )
    )
    with golden.stage(altered, tmp_path / "00") as a, golden.stage(other, tmp_path / "01") as b:
        _alter(a)
        results = _replay([a, b], tmp_path / "junit.xml")
    assert results[b.name] is None
    assert results[a.name] is not None and "CAT_ASSET_SIZE_MISMATCH" in results[a.name]


def _alter(staged: Path) -> None:
    nb = nbformat.read(staged, as_version=4)
    altered = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and "CAT_ASSET_DIGEST_MISMATCH" in output.text:
                output.text = output.text.replace(
                    "CAT_ASSET_DIGEST_MISMATCH", "CAT_ASSET_SIZE_MISMATCH"
                )
                altered += 1
    assert altered
    nbformat.write(nb, staged)


def _alter_and_check(staged: Path) -> None:
    _alter(staged)
    result = _nbval(staged)
    assert result.returncode != 0
    assert "CAT_ASSET_SIZE_MISMATCH" in result.stdout


# A changed runbook makes its golden stale: tests/test_repo.py proves it in a runbook
# repository of its own (a copy of this library would define every id twice).
