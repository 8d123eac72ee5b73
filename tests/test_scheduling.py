"""How the suite is split across xdist workers (conftest.xdist_scope): an expensive shared
fixture is built once, a golden replay batch runs in one process, the rest spreads."""

from __future__ import annotations

from .conftest import xdist_scope


def test_a_module_sharing_a_live_sandbox_runs_whole_on_one_worker() -> None:
    ids = [
        "tests/test_runbooks_ui.py::test_fault_is_found_and_the_run_fails[RBK-ui-story-node-render]",
        "tests/test_runbooks_ui.py::test_apply_fixes_it[RBK-ui-timeline-desync]",
    ]
    assert {xdist_scope(i) for i in ids} == {"tests/test_runbooks_ui.py"}


def test_a_module_sharing_an_installed_wheel_runs_whole_on_one_worker() -> None:
    assert xdist_scope("tests/test_wheel.py::test_where_from_an_empty_folder") == (
        "tests/test_wheel.py"
    )


def test_golden_batches_are_units_and_other_goldens_spread() -> None:
    batched = "tests/test_golden.py::test_golden_reruns_identically[RBK-a.sandbox|golden-batch-3]"
    alone = "tests/test_golden.py::test_golden_reruns_identically[RBK-api-5xx-spike.live]"
    assert xdist_scope(batched) == "golden-batch-3"
    assert xdist_scope(alone) == alone


def test_independent_tests_are_spread_one_by_one() -> None:
    nodeid = "tests/test_redact.py::test_clean_is_idempotent"
    assert xdist_scope(nodeid) == nodeid
