"""PR-first end to end: a run makes a branch + patch, pushes it, `incident fixes` follows it
to merged, and the resolve gate wants a verification after the merge (issue 15)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from kfm_runbooks import ledger, resolve

from .conftest import NOTEBOOKS, Cli

NOTEBOOK = str(NOTEBOOKS / "pr_first.ipynb")


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def system(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(checkout, its bare origin, a target describing it) with a record lacking a licence."""
    origin = tmp_path / "origin.git"
    _git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    repo = tmp_path / "kfm"
    _git(tmp_path, "init", "--quiet", "--initial-branch=main", str(repo))
    _git(repo, "config", "user.name", "Repo Owner")
    _git(repo, "config", "user.email", "owner@example.org")
    (repo / "data").mkdir()
    (repo / "data" / "a.json").write_text(json.dumps({"id": "a", "license": None}) + "\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "catalog")
    _git(repo, "remote", "add", "origin", str(origin))
    _git(repo, "push", "--quiet", "origin", "main")
    target = tmp_path / "kfm.target.yaml"
    target.write_text("name: kfm-git\nkind: fixture\ngit: true\n")
    return repo, origin, target


def _run(cli: Cli, incident_id: str, target: Path, repo: Path, *extra: str) -> dict:
    result = cli(
        "run",
        NOTEBOOK,
        "--incident",
        incident_id,
        "--target",
        str(target),
        "-p",
        f"file={repo / 'data' / 'a.json'}",
        "--json",
        *extra,
    )
    out = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return {"exit": result.exit_code, "out": out, "output": result.output}


def _entries(ws: Path) -> list[dict]:
    return ledger.check(ws / "10_evidence" / "ledger.jsonl").entries


def test_a_fix_goes_branch_patch_push_merge_verify_resolve(
    cli: Cli, incident: tuple[str, Path], system: tuple[Path, Path, Path], root: Path
) -> None:
    incident_id, ws = incident
    repo, origin, target = system
    head = _git(repo, "rev-parse", "HEAD")

    first = _run(cli, incident_id, target, repo)
    assert first["exit"] == 1 and first["out"]["outcome"] == "failed"

    applied = _run(cli, incident_id, target, repo, "--apply", "--push", "origin")
    assert applied["exit"] == 1, applied["output"]  # not merged yet: still FAIL, honestly
    action = [e for e in _entries(ws) if e["kind"] == "action"][-1]["data"]
    fix = action["pr_first"]
    assert fix["branch"] == f"incident/{incident_id}/test-pr-first"
    assert (fix["base"], fix["main"], fix["remote"]) == (head, "main", "origin")
    assert _git(origin, "rev-parse", fix["pushed_ref"]) == fix["commit"]
    # the checkout is untouched; the patch is evidence with the hash the ledger names
    assert _git(repo, "rev-parse", "HEAD") == head and _git(repo, "status", "--porcelain") == ""
    assert json.loads((repo / "data" / "a.json").read_text())["license"] is None
    patch = ws / fix["patch"]
    assert patch.parent == ws / "20_actions" / "diffs"

    assert hashlib.sha256(patch.read_bytes()).hexdigest() == fix["patch_sha256"]
    assert f"Run: {applied['out']['run_id']}" in patch.read_text()
    assert fix["branch"] in (ws / "20_actions" / "commands.md").read_text()

    listed = cli("incident", "fixes", incident_id, "--json")
    assert [r["state"] for r in json.loads(listed.stdout)] == ["pending"]
    assert any("is not merged" in m for m in resolve.check(incident_id, root))

    _git(repo, "merge", "--quiet", "--no-ff", "-m", "Merge the licence fix", fix["branch"])
    listed = json.loads(cli("incident", "fixes", incident_id, "--json").stdout)
    assert listed[0]["state"] == "merged" and listed[0]["merged_at"]
    assert any("after the merge" in m for m in resolve.check(incident_id, root))

    after = _run(cli, incident_id, target, repo)
    assert after["exit"] == 0, after["output"]
    assert not [m for m in resolve.check(incident_id, root) if "PR-first" in m]
    assert cli("verify", incident_id).exit_code == 0


def test_rollback_of_a_merged_fix_is_a_revert_branch(
    cli: Cli, incident: tuple[str, Path], system: tuple[Path, Path, Path], root: Path
) -> None:
    incident_id, ws = incident
    repo, _, target = system
    _run(cli, incident_id, target, repo, "--apply")
    action = [e for e in _entries(ws) if e["kind"] == "action"][-1]["data"]
    pending = cli("rollback", incident_id, action["action_id"], "--apply")
    assert pending.exit_code == 2 and "abandon" in pending.output
    _git(repo, "merge", "--quiet", "--ff-only", action["pr_first"]["branch"])
    merged_head = _git(repo, "rev-parse", "HEAD")
    undone = cli("rollback", incident_id, action["action_id"], "--apply")
    assert undone.exit_code == 0, undone.output
    assert _git(repo, "rev-parse", "HEAD") == merged_head  # no push to main, a new branch
    rows = json.loads(cli("incident", "fixes", incident_id, "--json").stdout)
    assert [(r["action_id"].endswith("/revert"), r["state"]) for r in rows] == [
        (False, "merged"),
        (True, "pending"),
    ]
    assert (ws / "20_actions" / "diffs" / f"{action['action_id']}-revert.patch").is_file()


def test_an_abandoned_fix_needs_a_reason_and_settles_the_gate(
    cli: Cli, incident: tuple[str, Path], system: tuple[Path, Path, Path], root: Path
) -> None:
    incident_id, ws = incident
    repo, _, target = system
    _run(cli, incident_id, target, repo, "--apply")
    action_id = [e for e in _entries(ws) if e["kind"] == "action"][-1]["data"]["action_id"]
    no_reason = cli("incident", "fixes", incident_id, "--abandon", action_id)
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    done = cli(
        "incident",
        "fixes",
        incident_id,
        "--abandon",
        action_id,
        "--reason",
        "fixed upstream by the data owner instead",
    )
    assert done.exit_code == 0, done.output
    assert _git(repo, "branch", "--format=%(refname:short)") == "main"  # branch deleted
    rows = json.loads(cli("incident", "fixes", incident_id, "--json").stdout)
    assert rows[0]["state"] == "abandoned" and rows[0]["reason"].startswith("fixed upstream")
    assert not [m for m in resolve.check(incident_id, root) if "PR-first" in m]


def test_bad_input_leaves_no_branch_and_names_the_problem(
    cli: Cli, incident: tuple[str, Path], system: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    incident_id, _ = incident
    repo, origin, target = system
    no_apply = _run(cli, incident_id, target, repo, "--push", "origin")
    assert no_apply["exit"] == 2 and "--apply" in no_apply["output"]
    bad_remote = _run(cli, incident_id, target, repo, "--apply", "--push", "--force")
    assert bad_remote["exit"] == 2
    (repo / "data" / "a.json").write_text(json.dumps({"id": "a", "license": "edited"}) + "\n")
    dirty = _run(cli, incident_id, target, repo, "--apply")
    assert dirty["exit"] == 3 and "uncommitted changes where the fix goes: data/a.json" in (
        dirty["output"] + json.dumps(dirty["out"])
    )
    _git(repo, "checkout", "--", "data/a.json")
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected: review required' >&2\nexit 1\n")
    hook.chmod(0o755)
    rejected = _run(cli, incident_id, target, repo, "--apply", "--push", "origin")
    assert rejected["exit"] == 3
    assert _git(repo, "branch", "--format=%(refname:short)") == "main"
    assert len(_git(repo, "worktree", "list").splitlines()) == 1


@pytest.mark.slow
def test_the_catalog_runbook_removes_a_dangling_link_pr_first(
    cli: Cli, incident: tuple[str, Path], tmp_path: Path, root: Path
) -> None:
    """The library's RBK-catalog-checksum-mismatch on the GitOps sandbox (`--git`): the
    dangling link a commit introduced is removed by a PR, not by an edit."""
    incident_id, _ = incident
    sandbox = tmp_path / "gitops"
    assert cli("sandbox", "create", str(sandbox), "--clean", "--git").exit_code == 0
    assert _git(sandbox, "rev-list", "--count", "main") == "2"  # history, pushed to origin
    origin = sandbox.with_name("gitops.origin.git")
    collection = sandbox / "catalog" / "hydrology" / "collection.json"
    doc = json.loads(collection.read_text())
    doc["links"].append(
        {
            "rel": "item",
            "href": "./items/kfm-sbx-hydro-springs.json",
            "type": "application/geo+json",
        }
    )
    collection.write_text(json.dumps(doc, indent=2) + "\n")
    _git(
        sandbox,
        "-c",
        "user.name=dev",
        "-c",
        "user.email=dev@example.org",
        "commit",
        "--quiet",
        "-am",
        "hydrology: list the springs item (its file was never added)",
    )
    target = str(sandbox / "target.yaml")
    runbook = ("RBK-catalog-checksum-mismatch", "--incident", incident_id, "--target", target)

    assert cli("run", *runbook).exit_code == 1  # the dangling link: FAIL
    applied = cli("run", *runbook, "--apply", "--push", "origin", "--json")
    assert applied.exit_code == 1  # fixed by a PR, not yet merged: still FAIL
    assert collection.read_text().count("kfm-sbx-hydro-springs") == 1  # checkout untouched
    [row] = json.loads(cli("incident", "fixes", incident_id, "--json").stdout)
    assert row["state"] == "pending"
    assert _git(origin, "rev-parse", f"refs/heads/{row['branch']}") == row["commit"]
    _git(
        sandbox,
        "-c",
        "user.name=reviewer",
        "-c",
        "user.email=rev@example.org",
        "merge",
        "--quiet",
        "--no-ff",
        "-m",
        "Merge the PR",
        row["branch"],
    )
    assert "kfm-sbx-hydro-springs" not in collection.read_text()
    assert cli("run", *runbook).exit_code == 0
    assert not [m for m in resolve.check(incident_id, root) if "PR-first" in m]
