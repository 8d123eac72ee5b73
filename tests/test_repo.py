"""`kfm-runbook init`: a team's runbook repository where new, lint, index and golden work
exactly as in this one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml

from kfm_runbooks import __version__, paths
from kfm_runbooks.repo import source_url

from .conftest import Cli

TEAM_ID = "RBK-catalog-team-check"


def finish_runbook(path: Path) -> None:
    """What an author does to a fresh runbook: its verification becomes a real check."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "verification" in c.metadata.get("tags", []))
    cell.source = (
        "named = run.target.name == 'example'\n"
        "run.check('target-is-the-example', 'PASS' if named else 'FAIL', "
        "f'target name {run.target.name!r}', examined=1, in_scope=1, unit='targets')"
    )
    nbformat.write(nb, path)


def add_golden_case(repo: Path, runbook_id: str = TEAM_ID) -> None:
    cases = repo / "tests" / "golden" / "cases" / "catalog.yaml"
    cases.write_text(
        yaml.safe_dump(
            {runbook_id: [{"case": "example", "target": "file:targets/example.target.yaml"}]}
        )
    )


@pytest.fixture
def team(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh repository from `init` (without git), as the current folder."""
    monkeypatch.delenv("KFM_INCIDENT_ROOT")
    monkeypatch.delenv("KFM_SANDBOX_DIR")
    result = cli("init", str(tmp_path / "team"), "--no-git")
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path / "team")
    return tmp_path / "team"


def test_init_lays_out_a_runbook_repository(cli: Cli, team: Path) -> None:
    for name in (
        "README.md",
        ".gitignore",
        ".gitattributes",
        ".pre-commit-config.yaml",
        ".github/workflows/runbooks.yml",
        "runbooks/TEMPLATE_runbook.ipynb",
        "runbooks/README.md",
        "incident_cases/README.md",
        "targets/example.target.yaml",
        "tests/golden/sanitize.cfg",
    ):
        assert (team / name).is_file(), name
    assert sorted(p.name for p in (team / "runbooks").iterdir() if p.is_dir()) == [
        "ai", "api", "catalog", "graph", "infra", "pipelines", "security", "ui"
    ]  # fmt: skip
    assert (team / "tests/golden/sanitize.cfg").read_bytes() == (
        paths.packaged("golden/sanitize.cfg").read_bytes()
    )
    storage = (team / "incident_cases/README.md").read_text()
    assert "## Case storage" in storage and "## Postmortems" in storage
    assert (
        "*.ipynb diff=jupyternotebook merge=jupyternotebook"
        in (team / ".gitattributes").read_text()
    )
    where = json.loads(cli("where", "--json").stdout)
    assert where["repository"]["path"] == str(team)
    assert where["library"][0]["path"] == str(team / "runbooks")
    assert where["incident_root"]["path"] == str(team / "incident_cases")
    assert where["sandbox"]["path"] == str(team / ".kfm" / "sandbox")
    assert cli("lint").exit_code == 0
    assert cli("index", "--check").exit_code == 0
    assert cli("golden", "--check").exit_code == 0


def test_init_wires_this_projects_hooks_and_ci(team: Path) -> None:
    from pre_commit.clientlib import load_config

    config = load_config(str(team / ".pre-commit-config.yaml"))
    ours = config["repos"][0]
    assert ours["repo"] == source_url() and ours["rev"] == f"v{__version__}"
    published = yaml.safe_load((paths.checkout() / ".pre-commit-hooks.yaml").read_text())  # type: ignore[operator]
    assert {h["id"] for h in ours["hooks"]} <= {h["id"] for h in published}
    workflow = yaml.safe_load((team / ".github/workflows/runbooks.yml").read_text())
    steps = [s.get("run", "") for s in workflow["jobs"]["runbooks"]["steps"]]
    assert f'python -m pip install "kfm-runbooks[golden]=={__version__}"' in steps
    for command in ("lint", "index --check", "golden --check", "golden --replay"):
        assert f"kfm-runbook {command}" in steps, command


def test_init_refuses_a_folder_in_use_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    result = cli("init", str(used))
    assert result.exit_code == 2 and "not an empty folder" in result.stderr
    assert [p.name for p in used.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in tmp_path.iterdir() if not p.name.startswith(".used.init-")
    )
    bad = cli("init", str(tmp_path / "x"), "--domain", "nope")
    assert bad.exit_code == 2 and not (tmp_path / "x").exists()


def test_new_lint_index_work_in_the_team_repo(cli: Cli, team: Path) -> None:
    result = cli("new", "catalog", "team-check", "--title", "Team check")
    assert result.exit_code == 0, result.output
    path = team / "runbooks" / "catalog" / f"{TEAM_ID}.ipynb"
    assert result.stdout.strip() == str(path)
    assert cli("lint").exit_code == 0
    assert cli("lint", "--strict").exit_code == 1  # the TODO markers a new runbook carries
    stale = cli("index", "--check")
    assert stale.exit_code == 1 and "stale" in stale.stderr
    assert cli("index").exit_code == 0 and cli("index", "--check").exit_code == 0
    index = (team / "runbooks" / "README.md").read_text()
    assert TEAM_ID in index and "RBK-catalog-checksum-mismatch" not in index
    listed = {row["id"] for row in json.loads(cli("list", "--json").stdout)}
    assert {TEAM_ID, "RBK-catalog-checksum-mismatch", "RBK-api-5xx-spike"} <= listed
    missing = cli("golden", "--check")
    assert missing.exit_code == 1 and f"{TEAM_ID} has no golden case" in missing.stdout


@pytest.mark.slow
def test_golden_works_in_the_team_repo(cli: Cli, team: Path) -> None:
    assert cli("new", "catalog", "team-check", "--title", "Team check").exit_code == 0
    path = team / "runbooks" / "catalog" / f"{TEAM_ID}.ipynb"
    finish_runbook(path)
    add_golden_case(team)
    missing = cli("golden", "--check")
    assert missing.exit_code == 1 and "is missing" in missing.stdout
    made = cli("golden", TEAM_ID)
    assert made.exit_code == 0, made.output
    golden = team / "tests" / "golden" / "catalog" / f"{TEAM_ID}.example.ipynb"
    assert made.stdout.strip() == f"wrote {golden}"
    assert "target-is-the-example" in golden.read_text()
    assert cli("golden", "--check").exit_code == 0
    replay = cli("golden", "--replay")
    assert replay.exit_code == 0, replay.output

    # a changed output fails the replay; a changed runbook makes its golden stale
    saved = golden.read_text()
    golden.write_text(saved.replace("target name 'example'", "target name 'other'"))
    changed = cli("golden", "--replay")
    assert changed.exit_code == 1 and "target name" in changed.stdout
    golden.write_text(saved)
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].source += "\n- one more hardening task"
    nbformat.write(nb, path)
    stale = cli("golden", "--check")
    assert stale.exit_code == 1 and "make golden" in stale.stdout and TEAM_ID in stale.stdout


def test_golden_outside_a_repository_says_where_to_go(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(paths, "checkout", lambda: None)  # as from a wheel: no checkout
    monkeypatch.setattr(paths, "packaged_library", lambda: tmp_path / "site" / "runbooks")
    (tmp_path / "site" / "runbooks").mkdir(parents=True)
    result = cli("golden", "--check")
    assert result.exit_code == 2 and "kfm-runbook init" in result.stderr
    assert cli("new", "api", "x-y", "--title", "t").exit_code == 2


@pytest.mark.slow  # nbdime's start-up
def test_init_makes_a_git_repository_with_nbdime_drivers(cli: Cli, tmp_path: Path) -> None:
    result = cli("init", str(tmp_path / "repo"))
    assert result.exit_code == 0, result.output
    config = subprocess.run(
        ["git", "-C", str(tmp_path / "repo"), "config", "--local", "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "diff.jupyternotebook.command=git-nbdiffdriver diff" in config
    assert "merge.jupyternotebook.driver=git-nbmergedriver merge" in config
    # inside an existing work tree, git is left alone
    assert cli("init", str(tmp_path / "repo" / "nested"), "--domain", "api").exit_code == 0
    assert not (tmp_path / "repo" / "nested" / ".git").exists()
    assert [p.name for p in (tmp_path / "repo/nested/runbooks").iterdir() if p.is_dir()] == ["api"]
