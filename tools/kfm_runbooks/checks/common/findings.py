"""The findings-report base: one rule for a report's outcome and codes.

A report is a dataclass holding `findings: list[Finding]` about one judged item (a
record, a manifest, a distribution). Mix `FindingsReport` in and it gets:

    outcome    KFM's fail-closed verdict over the findings (`checks.verdict`): ERROR when
               a finding's code is one of the report's error codes, else FAIL (blocking)
               > HOLD > PASS. Info findings never change it.
    codes      sorted distinct codes of the findings the outcome rests on (info excluded:
               what KFM's expected-findings manifests and operators compare)
    all_codes  sorted distinct codes of every finding, info included
    notes      sorted distinct codes of the info findings alone

A report names its error codes with the class attribute `ERROR_CODES`, or overrides
`verdict_error_codes()` when they vary per instance.
"""

from __future__ import annotations

from typing import ClassVar

from ...vocab import Severity, Verdict
from .. import Finding, verdict


class FindingsReport:
    """Mixin for dataclasses with a `findings` list (see the module docstring)."""

    findings: list[Finding]
    ERROR_CODES: ClassVar[frozenset[str]] = frozenset()

    def verdict_error_codes(self) -> frozenset[str]:
        return self.ERROR_CODES

    @property
    def outcome(self) -> Verdict:
        return verdict(self.findings, self.verdict_error_codes())

    @property
    def codes(self) -> list[str]:
        return sorted({f.code for f in self.findings if f.severity != Severity.INFO})

    @property
    def all_codes(self) -> list[str]:
        return sorted({f.code for f in self.findings})

    @property
    def notes(self) -> list[str]:
        return sorted({f.code for f in self.findings if f.severity == Severity.INFO})
