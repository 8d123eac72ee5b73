"""Several runs against one incident at once: one consistent ledger and manifest."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
from pathlib import Path

import pytest

from kfm_runbooks import ledger, manifest

from .conftest import KFM_BIN, NOTEBOOKS, Cli, sha256sum_check

pytestmark = pytest.mark.slow


def test_parallel_runs_keep_one_chain(cli: Cli, incident: tuple[str, Path], sandbox: Path) -> None:
    incident_id, ws = incident

    def one(label: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(KFM_BIN),
                "run",
                str(NOTEBOOKS / "applies_actions.ipynb"),
                "--incident",
                incident_id,
                "--target",
                str(sandbox),
                "--apply",
                "-p",
                f"label={label}",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=300,
        )

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, ["a", "b", "c", "d"]))
    for result in results:
        assert result.returncode == 0, result.stderr
    run_ids = {json.loads(r.stdout)["run_id"] for r in results}
    assert len(run_ids) == 4

    chain = ledger.check(ws / "10_evidence/ledger.jsonl")
    assert chain.problems == []
    kinds = [e["kind"] for e in chain.entries]
    assert kinds.count("run") == 4 and kinds.count("action") == 12 and kinds.count("evidence") == 4
    names = [e.name for e in manifest.read(ws / "10_evidence/hashes.sha256")]
    assert len(names) == len(set(names)) == 4 * 4  # notebook, target, prov, log per run
    assert sha256sum_check(ws).returncode == 0
    assert cli("verify", incident_id).exit_code == 0
    commands = (ws / "20_actions/commands.md").read_text()
    assert commands.count("## ACT-") == 12
