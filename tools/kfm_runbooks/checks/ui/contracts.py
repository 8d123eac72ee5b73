"""KFM's registry-side contracts: can a registered layer load at all?

A layer is loadable only when (1) the view registry that routes to it is coherent, (2) its
LayerManifest is valid and its representation renderable, and (3) the manifest is
admitted for runtime registration. Three KFM contracts, with KFM's codes unchanged:

- View registry profile (`VIEW_REGISTRY_PROFILE_V1`, schema
  contracts/v1/ui/view_registry_profile): closed schema, then identity (RFC 8785 spec_hash
  and registry id), entry / layer order, duplicate views and routes, release/catalog role
  collapse, direct-store and embedded-query references, catalog closure (HOLD -> ABSTAIN,
  DENY -> DENY). Outcomes PASS | ABSTAIN | DENY | ERROR.
- LayerManifest (contracts/v1/data/layer_manifest): the legacy id-only profile or the
  closed fixture profile; semantic rules (spec_hash / id, canonical reference arrays,
  floating `latest` references, reference role collapse, source layer vs protocol, zoom
  range, bounds, temporal window, public exposure, governance). PASS | FAIL | ERROR.
- Runtime admission (`kfm.layer-manifest-admission-fixture.v1`): PASS
  (LAYER_MANIFEST_REGISTER_ELIGIBLE) | HOLD | DENY | ERROR, first failing gate wins.

KFM's case files state expected verdicts; `CaseVerdict.matches` compares them exactly.
The admission cases name mutations that KFM's test harness
(apps/explorer-web tests of layer_manifest_admission) defines; ui_admission.ADMISSION_MUTATIONS
restates that table. Bad input (unreadable files, malformed cases) becomes findings.
"""

from __future__ import annotations

from ...vocab import Verdict
from .. import BLOCKING, HOLD, Finding
from .admission import admission_cases, admit
from .contract_base import HELD, CaseVerdict, ContractsConfig
from .layer_manifest import manifest_cases, manifest_semantics, validate_manifest
from .view_registry import validate_view_registry, view_registry_cases

__all__ = [
    "CaseVerdict",
    "ContractsConfig",
    "admit",
    "assess",
    "manifest_semantics",
    "validate_manifest",
    "validate_view_registry",
    "verdict_findings",
]


def assess(config: ContractsConfig) -> tuple[list[CaseVerdict], list[Finding]]:
    """Every configured suite; suites the target does not name are skipped."""
    verdicts: list[CaseVerdict] = []
    problems: list[Finding] = []
    if config.view_registry_cases is not None:
        got = view_registry_cases(config)
        verdicts, problems = verdicts + got[0], problems + got[1]
    if config.manifests:
        got = manifest_cases(config)
        verdicts, problems = verdicts + got[0], problems + got[1]
    if config.admission_cases is not None:
        got = admission_cases(config)
        verdicts, problems = verdicts + got[0], problems + got[1]
    return verdicts, problems


def verdict_findings(verdicts: list[CaseVerdict]) -> list[Finding]:
    """Not-PASS verdicts as findings: HOLD / ABSTAIN held, the rest blocking."""
    out = []
    for v in verdicts:
        if v.outcome == Verdict.PASS:
            continue
        severity = HOLD if v.outcome in HELD else BLOCKING
        for code, path in v.findings:
            out.append(Finding(code, f"{v.suite}:{v.case}", path, severity, v.outcome))
    return out
