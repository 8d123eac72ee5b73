"""nbval regression: every golden re-runs green, is fresh, and really compares findings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kfm_runbooks import golden

pytestmark = pytest.mark.slow
CASES = golden.load_cases()


def runbook_paths() -> list[Path]:
    from kfm_runbooks import runbook

    return runbook.discover()


# pytest + nbval in a fresh process, with the same deferral of a slow optional import
# (rfc3987_syntax, seconds per process) as the CLI, the worker and the kernel.
_PYTEST_DEFERRED = (
    "import sys\n"
    "from kfm_runbooks._speedups import defer_slow_optional_imports\n"
    "defer_slow_optional_imports()\n"
    "import pytest\n"
    "sys.exit(pytest.main(sys.argv[1:]))\n"
)


def _nbval(notebook: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            _PYTEST_DEFERRED,
            "--nbval",
            notebook.name,
            "--nbval-sanitize-with",
            str(golden.SANITIZE_FILE),
            "-p",
            "no:cacheprovider",
            "-q",
            "--no-header",
            "-o",
            "addopts=",
            "--rootdir",
            str(notebook.parent),
        ],
        cwd=notebook.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("case", CASES, ids=[f"{c.runbook}.{c.case}" for c in CASES])
def test_golden_is_fresh(case: golden.Case) -> None:
    assert golden.stale_reason(case) is None, golden.stale_reason(case)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.runbook}.{c.case}" for c in CASES])
def test_golden_reruns_identically(case: golden.Case, tmp_path: Path) -> None:
    with golden.stage(case, tmp_path) as notebook:
        result = _nbval(notebook)
    assert result.returncode == 0, result.stdout[-4000:]


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


def _alter_and_check(staged: Path) -> None:
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
    result = _nbval(staged)
    assert result.returncode != 0
    assert "CAT_ASSET_SIZE_MISMATCH" in result.stdout


def test_a_changed_runbook_makes_its_golden_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from kfm_runbooks import runbook

    library = tmp_path / "runbooks"
    shutil.copytree(runbook.runbooks_dir(), library)
    monkeypatch.setenv("KFM_RUNBOOKS_DIR", str(library))
    case = next(
        c for c in CASES if (c.runbook, c.case) == ("RBK-catalog-checksum-mismatch", "sandbox")
    )
    assert golden.stale_reason(case) is None
    path = runbook.find(case.runbook)
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].source += "\n- one more hardening task"
    nbformat.write(nb, path)
    reason = golden.stale_reason(case)
    assert reason is not None and "make golden" in reason
