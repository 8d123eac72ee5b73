"""history.describe: one factual line per ledger entry (postmortem timeline, report)."""

from __future__ import annotations

import pytest

from kfm_runbooks import history
from kfm_runbooks.vocab import LedgerKind

# written only to be superseded in the same lock (a torn publication names it instead)
INTERNAL = {LedgerKind.PUBLISH_INTENT}


@pytest.mark.parametrize("kind", [k for k in LedgerKind if k not in INTERNAL])
def test_every_kind_gets_a_line_of_its_own(kind: LedgerKind) -> None:
    line = history.describe({"kind": kind.value, "data": {"summary": "s"}})
    assert line and line != kind.value


def test_a_line_carries_the_facts_of_its_entry() -> None:
    run = {"run_id": "RUN-1", "runbook": {"id": "RBK-x-y"}, "outcome": "failed", "detail": "1 FAIL"}
    assert history.describe({"kind": "run", "data": run}) == "run RUN-1 RBK-x-y → failed (1 FAIL)"
    assert history.describe({"kind": "session.sealed", "data": run}).startswith("session sealed")
    action = {"action_id": "ACT-1", "ok": False, "error": "denied", "title": "Quarantine x"}
    assert history.describe({"kind": "action", "data": action}) == (
        "action ACT-1 FAILED (denied): Quarantine x"
    )
    started = {"run_id": "RUN-2", "runbook": {"id": "RBK-x-y"}, "apply": True}
    assert history.describe({"kind": "run.started", "data": started}) == (
        "run RUN-2 RBK-x-y started (APPLY)"
    )
    assert history.describe({"kind": "someday.new", "data": {}}) == "someday.new"
