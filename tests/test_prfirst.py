"""PR-first fixes (prfirst.py) on a real git repository with a bare origin beside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kfm_runbooks import prfirst
from kfm_runbooks.prfirst import FixError


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout on `main` with two commits, pushed to a bare `origin` next to it."""
    origin = tmp_path / "origin.git"
    _git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    work = tmp_path / "kfm"
    _git(tmp_path, "init", "--quiet", "--initial-branch=main", str(work))
    _git(work, "config", "user.name", "Repo Owner")
    _git(work, "config", "user.email", "owner@example.org")
    (work / "data").mkdir()
    (work / "data" / "a.json").write_text(json.dumps({"license": None}) + "\n")
    (work / "data" / "b.json").write_text(json.dumps({"license": "CC-BY-4.0"}) + "\n")
    _git(work, "add", ".")
    _git(work, "commit", "--quiet", "-m", "catalog")
    (work / "README").write_text("kfm\n")
    _git(work, "add", ".")
    _git(work, "commit", "--quiet", "-m", "readme")
    _git(work, "remote", "add", "origin", str(origin))
    _git(work, "push", "--quiet", "origin", "main")
    return work


def _set_license(path: Path, value: str) -> Callable[[Callable[[Path], Path]], dict[str, str]]:
    def change(at: Callable[[Path], Path]) -> dict[str, str]:
        twin = at(path)
        twin.write_text(json.dumps({"license": value}) + "\n")
        return {"file": twin.name, "license": value}

    return change


def _fix(repo: Path, change: Callable[..., object], files: list[Path] | None = None) -> tuple:
    return prfirst.make_fix(
        files or [repo / "data" / "a.json"],
        change,
        incident_id="INC-20261203-001",
        run_id="RUN-test",
        runbook_slug="catalog-license-sensitivity",
        evidence="ab" * 32,
        title="Set the licence of a.json",
        actor="Ada Operator",
    )


def _branches(repo: Path) -> list[str]:
    return _git(repo, "branch", "--format=%(refname:short)").split()


def test_a_fix_is_a_commit_on_its_own_branch_and_the_checkout_is_untouched(repo: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    before = (repo / "data" / "a.json").read_bytes()
    fix, result, patch = _fix(repo, _set_license(repo / "data" / "a.json", "CC0-1.0"))
    assert fix is not None and result == {"file": "a.json", "license": "CC0-1.0"}
    assert fix.branch == "incident/INC-20261203-001/catalog-license-sensitivity"
    assert (fix.base, fix.main, fix.files) == (head, "main", ["data/a.json"])
    # the operator's checkout: same HEAD, same bytes, clean, one worktree
    assert _git(repo, "rev-parse", "HEAD") == head
    assert (repo / "data" / "a.json").read_bytes() == before
    assert _git(repo, "status", "--porcelain") == ""
    assert len(_git(repo, "worktree", "list").splitlines()) == 1
    # the commit: author, parent, trailers, only the declared file
    assert _git(repo, "log", "-1", "--format=%an|%P", fix.commit) == f"Ada Operator|{head}"
    trailers = _git(repo, "log", "-1", "--format=%(trailers:only,unfold)", fix.commit)
    assert trailers.splitlines() == [
        "Incident: INC-20261203-001",
        "Run: RUN-test",
        f"Evidence: {'ab' * 32}",
    ]
    assert _git(repo, "show", "--name-only", "--format=", fix.commit) == "data/a.json"
    # the patch is git format-patch output that applies to the base
    assert patch.startswith(b"From " + fix.commit.encode())
    subprocess.run(["git", "-C", str(repo), "apply", "--check"], input=patch, check=True)
    assert fix.signed is False  # this repository's git is not configured to sign


def test_uncommitted_changes_where_the_fix_goes_are_refused_by_name(repo: Path) -> None:
    (repo / "data" / "a.json").write_text("{}\n")
    with pytest.raises(FixError, match=r"uncommitted changes where the fix goes: data/a\.json"):
        _fix(repo, _set_license(repo / "data" / "a.json", "CC0-1.0"))
    assert _branches(repo) == ["main"]
    # a dirty file elsewhere does not block the fix
    _git(repo, "checkout", "--", "data/a.json")
    (repo / "README").write_text("edited\n")
    fix, _, _ = _fix(repo, _set_license(repo / "data" / "a.json", "CC0-1.0"))
    assert fix is not None


def test_detached_head_and_an_existing_branch_are_refused(repo: Path) -> None:
    _git(repo, "checkout", "--quiet", "--detach")
    with pytest.raises(FixError, match="detached HEAD"):
        _fix(repo, _set_license(repo / "data" / "a.json", "CC0-1.0"))
    _git(repo, "checkout", "--quiet", "main")
    _git(repo, "branch", "incident/INC-20261203-001/catalog-license-sensitivity")
    with pytest.raises(FixError, match="already exists"):
        _fix(repo, _set_license(repo / "data" / "a.json", "CC0-1.0"))


def test_a_change_outside_its_declared_files_leaves_nothing_behind(repo: Path) -> None:
    def sneaky(at: Callable[[Path], Path]) -> None:
        at(repo / "data" / "a.json").write_text("{}\n")
        at(repo / "README").write_text("sneaky\n")

    with pytest.raises(FixError, match="changed files it did not declare: README"):
        _fix(repo, sneaky)
    assert _branches(repo) == ["main"]
    assert len(_git(repo, "worktree", "list").splitlines()) == 1
    assert _git(repo, "status", "--porcelain") == ""


def test_a_change_that_raises_leaves_nothing_behind(repo: Path) -> None:
    def broken(at: Callable[[Path], Path]) -> None:
        at(repo / "data" / "a.json").write_text("half")
        raise ValueError("the change failed half-way")

    with pytest.raises(ValueError, match="half-way"):
        _fix(repo, broken)
    assert _branches(repo) == ["main"]
    assert len(_git(repo, "worktree", "list").splitlines()) == 1


def test_nothing_to_change_makes_no_branch(repo: Path) -> None:
    fix, result, patch = _fix(
        repo, _set_license(repo / "data" / "b.json", "CC-BY-4.0"), files=[repo / "data" / "b.json"]
    )
    assert (fix, patch) == (None, b"") and result["license"] == "CC-BY-4.0"
    assert _branches(repo) == ["main"]


def test_a_path_outside_the_repository_is_refused(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    with pytest.raises(FixError, match="outside the git working tree"):
        _fix(repo, _set_license(outside, "x"), files=[repo / "data" / "a.json", outside])


def test_push_puts_the_branch_on_the_remote_and_a_rejection_is_one_line(
    repo: Path, tmp_path: Path
) -> None:
    fix, _, _ = _fix(repo, _set_license(repo / "data" / "a.json", "CC0-1.0"))
    assert fix is not None
    pushed = prfirst.push(fix, "origin")
    origin = tmp_path / "origin.git"
    assert _git(origin, "rev-parse", f"refs/heads/{fix.branch}") == fix.commit
    assert pushed.pushed_ref == f"refs/heads/{fix.branch}" and pushed.pr_url == ""
    assert pushed.compare == f"origin/main...origin/{fix.branch}"
    with pytest.raises(FixError, match="no remote 'upstream'"):
        prfirst.push(fix, "upstream")
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch protection: pushes need review' >&2\nexit 1\n")
    hook.chmod(0o755)
    _git(repo, "branch", "-D", fix.branch)
    again, _, _ = _fix(repo, _set_license(repo / "data" / "a.json", "MIT"))
    assert again is not None
    with pytest.raises(FixError, match="git push failed") as caught:
        prfirst.push(again, "origin")
    assert "\n" not in str(caught.value)


def test_state_follows_the_repository(repo: Path) -> None:
    fix, _, _ = _fix(repo, _set_license(repo / "data" / "a.json", "CC0-1.0"))
    assert fix is not None
    assert prfirst.state(fix.as_dict()).state == prfirst.PENDING
    _git(repo, "merge", "--quiet", "--no-ff", "-m", "Merge fix", fix.branch)
    merged = prfirst.state(fix.as_dict())
    assert merged.state == prfirst.MERGED
    assert merged.merged_at == _git(repo, "log", "-1", "--format=%cI", "HEAD")


def test_a_squash_merge_counts_as_merged_and_a_deleted_branch_as_gone(repo: Path) -> None:
    fix, _, _ = _fix(repo, _set_license(repo / "data" / "a.json", "CC0-1.0"))
    assert fix is not None
    _git(repo, "merge", "--quiet", "--squash", fix.branch)
    _git(repo, "commit", "--quiet", "-m", "Squashed fix")
    _git(repo, "branch", "-D", fix.branch)
    assert prfirst.state(fix.as_dict()).state == prfirst.MERGED
    other, _, _ = _fix(
        repo, _set_license(repo / "data" / "b.json", "MIT"), files=[repo / "data" / "b.json"]
    )
    assert other is not None
    _git(repo, "branch", "-D", other.branch)
    assert prfirst.state(other.as_dict()).state == prfirst.GONE


def test_revert_is_a_new_branch_that_undoes_a_merged_fix(repo: Path) -> None:
    original = (repo / "data" / "a.json").read_text()
    fix, _, _ = _fix(repo, _set_license(repo / "data" / "a.json", "CC0-1.0"))
    assert fix is not None
    _git(repo, "merge", "--quiet", "--ff-only", fix.branch)
    undo, patch = prfirst.revert(
        fix.as_dict(), incident_id="INC-20261203-001", action_id="ACT-0001", actor="Ada"
    )
    assert undo.branch == f"{fix.branch}-revert-act-0001" and undo.main == "main"
    assert _git(repo, "rev-parse", "HEAD") == fix.commit  # main untouched: a PR, not a push
    assert b"Reverts: " + fix.commit.encode() in patch
    _git(repo, "merge", "--quiet", "--ff-only", undo.branch)
    assert (repo / "data" / "a.json").read_text() == original


def test_the_commit_is_signed_when_the_operators_git_signs(repo: Path, tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen missing: `make openssh`")
    key = tmp_path / "signing"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops", "-f", str(key)], check=True
    )
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"owner@example.org {(tmp_path / 'signing.pub').read_text()}")
    for name, value in (
        ("gpg.format", "ssh"),
        ("user.signingkey", str(key)),
        ("commit.gpgsign", "true"),
        ("gpg.ssh.allowedSignersFile", str(allowed)),
    ):
        _git(repo, "config", name, value)
    fix, _, _ = _fix(repo, _set_license(repo / "data" / "a.json", "CC0-1.0"))
    assert fix is not None and fix.signed is True
    assert _git(repo, "log", "-1", "--format=%G?", fix.commit) == "G"


def test_a_forge_cli_on_path_opens_the_pr_and_its_url_is_recorded(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gh` stands in for any forge CLI here (no network): it is called with the branch and
    the main branch, and the URL it prints is what the action records."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "gh-calls"
    gh = bin_dir / "gh"
    gh.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "https://forge.example/kfm/pull/7"\n')
    gh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    fix, _, _ = _fix(repo, _set_license(repo / "data" / "a.json", "CC0-1.0"))
    assert fix is not None
    pushed = prfirst.push(fix, "origin")
    assert pushed.pr_url == "https://forge.example/kfm/pull/7"
    assert calls.read_text().split() == [
        "pr",
        "create",
        "--head",
        fix.branch,
        "--base",
        "main",
        "--fill",
    ]
