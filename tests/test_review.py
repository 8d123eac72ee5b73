"""Notebooks review well: nbdime drivers wired for git, pre-commit hooks valid and local."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

from .conftest import ROOT

BIN = Path(sys.executable).parent


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout


def test_git_diff_of_a_runbook_is_cell_by_cell(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    shutil.copyfile(ROOT / ".gitattributes", repo / ".gitattributes")
    book = repo / "RBK-catalog-checksum-mismatch.ipynb"
    shutil.copyfile(ROOT / "runbooks/catalog/RBK-catalog-checksum-mismatch.ipynb", book)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "base")
    subprocess.run(
        [str(BIN / "nbdime"), "config-git", "--enable"], cwd=repo, check=True, capture_output=True
    )
    nb = nbformat.read(book, as_version=4)
    verification = next(c for c in nb.cells if c.get("id") == "verification")
    verification.source = verification.source.replace("asset-digests", "asset-bytes")
    nbformat.write(nb, book)
    diff = _git(repo, "diff")
    assert "nbdiff" in diff
    assert "/cells/" in diff and "asset-bytes" in diff
    assert '"id":' not in diff  # not a raw JSON line diff


def test_precommit_config_is_valid_and_offline() -> None:
    config = ROOT / ".pre-commit-config.yaml"
    subprocess.run(
        [str(BIN / "pre-commit"), "validate-config", str(config)], check=True, capture_output=True
    )
    hooks = {
        h["id"]: h for repo in yaml.safe_load(config.read_text())["repos"] for h in repo["hooks"]
    }
    assert {
        "ruff",
        "ruff-format",
        "runbook-lint",
        "runbook-index",
        "detect-private-key",
        "check-added-large-files",
    } <= set(hooks)
    assert all(h["language"] == "system" for h in hooks.values())  # nothing fetched
    assert "jupyternotebook" in (ROOT / ".gitattributes").read_text()
