"""checks.common.findings and kfm_runbooks.vocab: one rule for every findings report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar

import yaml

from kfm_runbooks.checks import BLOCKING, HOLD, INFO, Finding, verdict
from kfm_runbooks.checks.catalog.labels import LabelReport
from kfm_runbooks.checks.common.findings import FindingsReport
from kfm_runbooks.checks.infra.backup import BackupReport
from kfm_runbooks.checks.infra.disk import VolumeReport
from kfm_runbooks.checks.pipelines.base import FileReport
from kfm_runbooks.checks.security.supply import DistReport
from kfm_runbooks.vocab import CheckStatus, LedgerKind, RunOutcome, Severity, Verdict


@dataclass
class _Report(FindingsReport):
    ERROR_CODES: ClassVar[frozenset[str]] = frozenset({"READ_ERROR"})
    findings: list[Finding] = field(default_factory=list)


def test_outcome_and_codes_follow_one_rule() -> None:
    report = _Report([Finding("B", "s"), Finding("A", "s", severity=INFO), Finding("B", "t")])
    assert report.outcome == Verdict.FAIL == "FAIL"
    assert report.codes == ["B"]  # a sorted list, info excluded
    assert report.all_codes == ["A", "B"] and report.notes == ["A"]
    assert _Report([Finding("A", "s", severity=INFO)]).outcome == "PASS"
    assert _Report([Finding("X", "s", severity=HOLD)]).outcome == "HOLD"
    assert _Report([Finding("READ_ERROR", "s", severity=HOLD)]).outcome == "ERROR"


def test_every_findings_report_uses_the_base() -> None:
    for report_type in (LabelReport, BackupReport, FileReport, DistReport, VolumeReport):
        assert issubclass(report_type, FindingsReport)
    backup = BackupReport(
        None, [], None, None, [Finding("X", "s"), Finding("N", "s", severity=INFO)]
    )
    assert backup.codes == ["X"]  # was a set with the info code in it
    assert FileReport("f", [Finding("E", "f", severity=INFO)], frozenset({"E"})).outcome == "ERROR"


def test_vocabulary_values_are_the_persisted_strings() -> None:
    assert [str(s) for s in Severity] == ["blocking", "hold", "info"]
    assert verdict([Finding("A", "s", severity=BLOCKING)]) == "FAIL"
    assert tuple(CheckStatus) == ("PASS", "FAIL", "HOLD")
    assert RunOutcome.KERNEL_DIED == "kernel-died" and LedgerKind.RUN_STARTED == "run.started"
    # a member encodes, formats and even reprs as its plain string: outputs are unchanged
    finding = Finding("A", "s", severity=HOLD)
    assert json.dumps(finding.as_dict()) == json.dumps(
        {"code": "A", "subject": "s", "field": "/", "severity": "hold", "message": ""}
    )
    assert yaml.safe_dump(finding.as_dict())  # plain strings: YAML can write it
    assert repr(Verdict.PASS) == "'PASS'" and f"{Verdict.PASS:<6}|" == "PASS  |"
    assert repr([HOLD]) == "['hold']"
