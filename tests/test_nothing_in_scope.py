"""An empty scope is never PASS: every runbook of the library, pointed at a target with
nothing in scope (empty folders, an empty log, services that are not running), must come
out HOLD or FAILED, never passed — whatever the runbook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kfm_runbooks import runbook

from .conftest import Cli
from .helpers import run_json

pytestmark = pytest.mark.slow

EMPTY = "empty"  # an empty folder beside the target
# runbook -> the target sections that give it nothing to judge (files-based runbooks)
FILES: dict[str, dict[str, Any]] = {
    "RBK-catalog-checksum-mismatch": {"catalog": {"items": [EMPTY], "data_root": EMPTY}},
    "RBK-catalog-stac-validation": {"catalog_validation": {"base": ".", "records": [EMPTY]}},
    "RBK-catalog-license-sensitivity": {
        "catalog_labels": {"base": ".", "records": [EMPTY], "labels": [EMPTY]}
    },
    "RBK-catalog-mystery-dataset": {
        "catalog_provenance": {"base": ".", "entries": [EMPTY], "evidence": [EMPTY]}
    },
    "RBK-graph-backup-verification": {"graph": {"backups": EMPTY}},
    "RBK-graph-constraint-offline": {"graph": {"uri": "no-graph.sqlite"}},
    "RBK-graph-count-anomaly": {"graph": {"uri": "no-graph.sqlite"}},
    "RBK-graph-orphaned-nodes": {"graph": {"uri": "no-graph.sqlite"}},
    "RBK-pipelines-determinism-drift": {"pipelines_determinism": {"receipts": [EMPTY]}},
    "RBK-pipelines-etag-loop": {"pipelines_sync": {"receipts": [EMPTY]}},
    "RBK-pipelines-partial-write": {"pipelines_releases": {"plans": [EMPTY]}},
    "RBK-pipelines-watcher-stuck": {"pipelines_watchers": {"registries": [EMPTY]}},
    "RBK-security-secret-exposure": {"security_secrets": {"paths": [EMPTY]}},
    "RBK-security-sensitive-layer-exposure": {
        "security_layers": {"published": [EMPTY], "registry": [EMPTY]}
    },
    "RBK-security-supply-chain": {
        "security_environment": {"site_packages": EMPTY, "lock": "empty.txt"}
    },
    "RBK-security-unauthorized-access": {
        "security_access": {"logs": ["empty.log"], "policy": "empty.txt", "blocklist": "b.yaml"}
    },
}


def _library() -> list[str]:
    return sorted(rb.stem for rb in runbook.discover())


def test_every_runbook_has_a_nothing_in_scope_case() -> None:
    assert len(_library()) == 31
    service = [r for r in _library() if r not in FILES]
    assert all(r.split("-")[1] in ("api", "ai", "ui", "infra") for r in service), service
    assert len(service) == 15


def _empty_target(folder: Path, runbook_id: str) -> Path:
    """Files-based runbooks: empty data. Service runbooks: a sandbox whose services are not
    running (nothing answers, so nothing can be verified)."""
    if runbook_id not in FILES:
        from kfm_runbooks.sandbox import create_sandbox

        return create_sandbox(folder / "sandbox", clean=True)
    folder.mkdir(parents=True)
    (folder / EMPTY).mkdir()
    (folder / "empty.txt").write_text("")
    (folder / "empty.log").write_text("")
    path = folder / "target.yaml"
    data = {"name": "nothing-in-scope", "kind": "fixture", **FILES[runbook_id]}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("runbook_id", _library())
def test_nothing_in_scope_never_passes(
    cli: Cli, incident: tuple[str, Path], tmp_path: Path, runbook_id: str
) -> None:
    target = _empty_target(tmp_path / "t", runbook_id)
    out = run_json(cli, runbook_id, incident[0], target)
    assert out["_exit"] == 1, (out["_exit"], out["_stderr"][-2000:])
    assert out["outcome"] in ("hold", "failed", "unverified"), out["statuses"]
