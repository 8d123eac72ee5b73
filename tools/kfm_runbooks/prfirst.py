"""PR-first fixes: a change to files under git becomes a reviewed commit, never an edit.

The seed's rule is "prefer PR-first fixes for code/config/data changes; no mystery fixes".
When the files a recovery step changes live in a git working tree, the step does not touch
the checked-out branch. `make_fix`:

1. refuses, before anything is created, a detached HEAD, a branch name that exists
   locally, and uncommitted changes in the files the step declares (naming them);
2. creates branch `incident/<INC>/<slug>` from HEAD in a separate worktree (inside the
   repository's git folder), so the operator's checkout is never disturbed;
3. lets the step write there (`at(path)` maps a path of the checkout to its twin);
4. refuses a change that touched files it did not declare; commits the declared files with
   the actor as author and trailers `Incident:`, `Run:`, `Evidence:` (signed when the
   operator's git is configured to sign: `commit.gpgsign`);
5. returns the `git format-patch` text (saved as evidence by the recorder) and removes the
   worktree; the branch stays. Any failure removes the worktree and the branch: nothing
   half-written.

`push` sends the branch to a remote (a rejected push deletes nothing and is one line),
records the PR URL a forge CLI (`gh`, `glab`) returns, else the compare ref. `state`
tells pending / merged (reachable from the main branch, or an equivalent patch there: a
squash merge) / gone (branch deleted unmerged). `revert` makes the undo of a merged fix:
a revert commit on a new branch, PR-first as well; never a force-push.

Git is driven through its CLI (no library offers worktrees, trailers and patch-id in one
place); every call has a timeout and runs with prompts off.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

GIT_TIMEOUT_S = 120
BRANCH_PREFIX = "incident"
_SLUG = re.compile(r"[^a-z0-9._-]+")


class FixError(InputError):
    """A PR-first step that cannot be made (one line naming the problem and the fix)."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"})
    return env


def _run(repo: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """`git -C repo args…` with prompts off and a timeout; git missing or hung: FixError."""
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args],
            input=stdin,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            env=_env(),
            check=False,
        )
    except FileNotFoundError as exc:
        raise FixError("git is not installed: install git (PR-first fixes need it)") from exc
    except subprocess.TimeoutExpired as exc:
        raise FixError(f"git {args[0]} did not finish in {GIT_TIMEOUT_S} s") from exc


def git_bytes(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """Its stdout as bytes; FixError with git's last line when it fails."""
    done = _run(repo, *args, stdin=stdin)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise FixError(f"git {args[0]} failed: {lines[-1] if lines else 'no message'}")
    return done.stdout


def git(repo: Path, *args: str, check: bool = True, stdin: bytes | None = None) -> str:
    """Run `git -C repo args…`; its stdout (stripped). FixError with git's last line."""
    if check:
        return git_bytes(repo, *args, stdin=stdin).decode(errors="replace").strip()
    return _run(repo, *args, stdin=stdin).stdout.decode(errors="replace").strip()


def _ok(repo: Path, *args: str) -> bool:
    """Whether `git -C repo args…` succeeds (a question git answers by its exit code)."""
    return _run(repo, *args).returncode == 0


def toplevel(path: Path) -> Path | None:
    """The working tree `path` lies in (None when it is not under git)."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists():
        folder = folder.parent
    try:
        top = git(folder, "rev-parse", "--show-toplevel")
    except FixError:
        return None
    return Path(top).resolve() if top else None


def tracked_repo(files: Iterable[Path]) -> tuple[Path | None, list[str]]:
    """(the repository, []) when every existing file is tracked by git there: the change
    can be a commit; else (None or the repository, the paths git does not track). A file
    in an ignored folder (a sandbox inside a project) is not a git-backed file."""
    paths = [Path(p) for p in files]
    repo = toplevel(paths[0]) if paths else None
    if repo is None:
        return None, [str(p) for p in paths]
    untracked = []
    for path in paths:
        if not path.exists():
            continue
        try:
            rel = _relative(repo, [path])[0]
        except FixError:
            untracked.append(str(path))
            continue
        if not git(repo, "ls-files", "--", rel):
            untracked.append(rel)
    return repo, untracked


def slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-.")[:60] or "fix"


def branch_name(incident_id: str, runbook_slug: str) -> str:
    return f"{BRANCH_PREFIX}/{incident_id}/{slug(runbook_slug)}"


@dataclass(frozen=True)
class Fix:
    """What a PR-first step made (recorded in its ledger action)."""

    repo: str
    branch: str
    base: str  # the commit the branch starts from (HEAD when it was made)
    main: str  # the branch HEAD was on: where the fix is expected to be merged
    commit: str
    files: list[str]  # relative to the repository
    signed: bool
    patch_sha256: str = ""
    patch: str = ""  # its path in the workspace (20_actions/diffs/…)
    remote: str = ""
    pushed_ref: str = ""
    pr_url: str = ""
    compare: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _relative(repo: Path, paths: Iterable[Path]) -> list[str]:
    out = []
    for path in paths:
        absolute = Path(path).resolve()
        try:
            out.append(absolute.relative_to(repo).as_posix())
        except ValueError as exc:
            raise FixError(
                f"{path} is outside the git working tree {repo}: a PR-first step changes "
                "files of one repository"
            ) from exc
    return sorted(set(out))


def _dirty(repo: Path, rels: list[str]) -> list[str]:
    """Changed, staged or untracked paths among `rels` (relative to the repository)."""
    status = git_bytes(
        repo,
        "status",
        "--porcelain=v1",
        "-z",
        "--no-renames",
        "--untracked-files=all",
        "--",
        *rels,
    )
    return sorted(item[3:].decode(errors="replace") for item in status.split(b"\0") if item)


def _within(rel: str, declared: list[str]) -> bool:
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in declared)


@contextlib.contextmanager
def _worktree(repo: Path, branch: str, base: str) -> Iterator[Path]:
    """A new branch at `base` checked out in a private worktree; on failure both go."""
    common = Path(git(repo, "rev-parse", "--git-common-dir"))
    common = common if common.is_absolute() else (repo / common)
    folder = common.resolve() / "kfm-worktrees" / secrets.token_hex(6)
    folder.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "add", "--quiet", "-b", branch, str(folder), base)
    keep = False
    try:
        yield folder
        keep = True
    finally:
        with contextlib.suppress(FixError):
            git(repo, "worktree", "remove", "--force", str(folder))
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(FixError):
            git(repo, "worktree", "prune")
        if not keep:
            with contextlib.suppress(FixError):
                git(repo, "branch", "-D", branch)


def _identity(actor: str, repo: Path) -> list[str]:
    """`-c` options naming the actor as committer when git has no identity configured,
    and the `--author` option (the actor, with git's email or one derived from it)."""
    configured = git(repo, "config", "user.email", check=False)
    email = configured or (actor if "@" in actor else f"{actor}@localhost")
    name = re.sub(r"[<>\n]", "", actor).strip() or "kfm-runbook"
    options = (
        []
        if configured and git(repo, "config", "user.name", check=False)
        else ["-c", f"user.name={name}", "-c", f"user.email={email}"]
    )
    return [*options, "commit", "--quiet", "--no-verify", f"--author={name} <{email}>"]


class _NothingChangedError(Exception):
    def __init__(self, result: Any) -> None:
        super().__init__("nothing changed")
        self.result = result


def make_fix(
    files: Iterable[Path],
    change: Callable[[Callable[[Path], Path]], Any],
    *,
    incident_id: str,
    run_id: str,
    runbook_slug: str,
    evidence: str,
    title: str,
    actor: str,
) -> tuple[Fix | None, Any, bytes]:
    """Make one PR-first change: (the fix or None when nothing changed, the change's
    result, the format-patch bytes)."""
    declared_paths = [Path(p) for p in files]
    if not declared_paths:
        raise FixError(f"PR-first step {title!r} declares no files: name what it changes")
    repo = toplevel(declared_paths[0])
    if repo is None:
        raise FixError(f"{declared_paths[0]} is not in a git working tree")
    declared = _relative(repo, declared_paths)
    head = git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if not head:
        raise FixError(
            f"{repo} has a detached HEAD: check out the branch fixes are based on "
            "(e.g. `git switch main`) and run again"
        )
    branch = branch_name(incident_id, runbook_slug)
    if git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False):
        raise FixError(
            f"branch {branch} already exists in {repo}: merge or delete it, or record it "
            f"abandoned (`kfm-runbook incident fixes {incident_id} --abandon …`)"
        )
    dirty = _dirty(repo, declared)
    if dirty:
        raise FixError(
            f"uncommitted changes where the fix goes: {', '.join(dirty[:5])}"
            f"{' …' if len(dirty) > 5 else ''}: commit or stash them first"
        )
    base = git(repo, "rev-parse", "HEAD")
    try:
        with _worktree(repo, branch, base) as tree:

            def at(path: Path) -> Path:
                return tree / _relative(repo, [path])[0]

            result = change(at)
            changed = _dirty(tree, ["."])
            stray = [rel for rel in changed if not _within(rel, declared)]
            if stray:
                raise FixError(
                    f"PR-first step {title!r} changed files it did not declare: "
                    f"{', '.join(stray[:5])}"
                )
            if not changed:
                raise _NothingChangedError(result)
            git(tree, "add", "--all", "--", *declared)
            git(
                tree,
                *_identity(actor, repo),
                "-m",
                f"{title}\n\nMade by kfm-runbook (PR-first) for incident {incident_id}.\n",
                f"--trailer=Incident: {incident_id}",
                f"--trailer=Run: {run_id}",
                f"--trailer=Evidence: {evidence}",
            )
            commit = git(tree, "rev-parse", "HEAD")
            signed = git(tree, "log", "-1", "--format=%G?", commit, check=False) not in ("", "N")
            patch = git_bytes(tree, "format-patch", "-1", "--stdout", commit)
    except _NothingChangedError as nothing:  # no branch is left behind
        return None, nothing.result, b""
    return Fix(str(repo), branch, base, head, commit, declared, signed), result, patch


# -- pushing and the PR link ----------------------------------------------------------------


def push(fix: Fix, remote: str) -> Fix:
    """Push the fix's branch; returns the fix with remote, ref and PR URL / compare ref."""
    repo = Path(fix.repo)
    if not git(repo, "remote", "get-url", remote, check=False):
        raise FixError(f"{repo} has no remote {remote!r}: `git remote -v` lists them")
    ref = f"refs/heads/{fix.branch}"
    git(repo, "push", "--quiet", "--porcelain", remote, f"{fix.commit}:{ref}")
    url = _forge_pr(repo, fix, remote)
    return Fix(
        **{
            **fix.as_dict(),
            "remote": remote,
            "pushed_ref": ref,
            "pr_url": url,
            "compare": f"{remote}/{fix.main}...{remote}/{fix.branch}",
        }
    )


def _forge_pr(repo: Path, fix: Fix, remote: str) -> str:
    """The PR URL a configured forge CLI returns ('' when none is on PATH or it fails)."""
    for tool, args in (
        ("gh", ["pr", "create", "--head", fix.branch, "--base", fix.main, "--fill"]),
        (
            "glab",
            [
                "mr",
                "create",
                "--source-branch",
                fix.branch,
                "--target-branch",
                fix.main,
                "--fill",
                "--yes",
            ],
        ),
    ):
        if shutil.which(tool):
            done = subprocess.run(
                [tool, *args],
                cwd=repo,
                capture_output=True,
                timeout=GIT_TIMEOUT_S,
                env=_env(),
                check=False,
            )
            urls = re.findall(r"https?://\S+", done.stdout.decode(errors="replace"))
            if done.returncode == 0 and urls:
                return str(urls[-1])
    return ""


# -- the state of a fix --------------------------------------------------------------------


PENDING, MERGED, GONE, ABANDONED = "pending", "merged", "branch deleted", "abandoned"


@dataclass(frozen=True)
class FixState:
    state: str
    merged_at: str = ""  # committer date (ISO) of the main commit that brought it in
    detail: str = ""


def state(fix: dict[str, Any]) -> FixState:
    """Where a recorded fix stands, asked of its repository now."""
    repo = Path(str(fix.get("repo", "")))
    commit, main, branch = str(fix.get("commit")), str(fix.get("main")), str(fix.get("branch"))
    if not repo.is_dir() or toplevel(repo) is None:
        return FixState(PENDING, detail=f"repository {repo} is not reachable from here")
    if not git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{main}", check=False):
        return FixState(PENDING, detail=f"main branch {main} not found in {repo}")
    if _has(repo, commit) and _ancestor(repo, commit, main):
        return FixState(MERGED, _merged_at(repo, commit, main), f"{commit[:12]} is on {main}")
    equivalent = _equivalent_on(repo, commit, main) if _has(repo, commit) else ""
    if equivalent:
        when = git(repo, "log", "-1", "--format=%cI", equivalent)
        return FixState(MERGED, when, f"merged as {equivalent[:12]} (same patch) on {main}")
    if git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False):
        return FixState(PENDING, detail=f"branch {branch} not merged into {main}")
    return FixState(GONE, detail=f"branch {branch} was deleted without being merged")


def _has(repo: Path, commit: str) -> bool:
    return _ok(repo, "cat-file", "-e", f"{commit}^{{commit}}")


def _ancestor(repo: Path, commit: str, main: str) -> bool:
    return _ok(repo, "merge-base", "--is-ancestor", commit, main)


def _merged_at(repo: Path, commit: str, main: str) -> str:
    """When `commit` reached `main`: the first main commit on the ancestry path (its merge
    commit), or the commit itself for a fast-forward."""
    path = git(
        repo, "rev-list", "--ancestry-path", "--first-parent", "--reverse", f"{commit}..{main}"
    )
    for candidate in path.splitlines():
        parents = git(repo, "rev-list", "--parents", "-n", "1", candidate).split()[1:]
        if any(p == commit or _ancestor(repo, commit, p) for p in parents[1:]):
            return git(repo, "log", "-1", "--format=%cI", candidate)
    return git(repo, "log", "-1", "--format=%cI", commit)


def _patch_id(repo: Path, commit: str) -> str:
    patch = git_bytes(repo, "show", "--format=", commit)
    out = git(repo, "patch-id", "--stable", check=False, stdin=patch).split()
    return out[0] if out else ""


def _equivalent_on(repo: Path, commit: str, main: str, depth: int = 500) -> str:
    """A commit on `main` (newest `depth`) with the same patch as `commit` (squash merge)."""
    wanted = _patch_id(repo, commit)
    if not wanted:
        return ""
    base = git(repo, "merge-base", commit, main, check=False)
    span = f"{base}..{main}" if base else main
    for candidate in git(repo, "rev-list", "--no-merges", "-n", str(depth), span).splitlines():
        if _patch_id(repo, candidate) == wanted:
            return candidate
    return ""


# -- undo: a revert, PR-first ------------------------------------------------------------


def revert(
    fix: dict[str, Any], *, incident_id: str, action_id: str, actor: str
) -> tuple[Fix, bytes]:
    """A commit that reverts a merged fix, on a new branch from its main branch."""
    repo = Path(str(fix["repo"]))
    main = str(fix["main"])
    branch = f"{fix['branch']}-revert-{slug(action_id)}"
    if git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False):
        raise FixError(f"branch {branch} already exists in {repo}: merge or delete it first")
    base = git(repo, "rev-parse", main)
    with _worktree(repo, branch, base) as tree:
        git(tree, "revert", "--no-edit", "--no-commit", str(fix["commit"]))
        git(
            tree,
            *_identity(actor, repo),
            "-m",
            f"Revert PR-first fix {str(fix['commit'])[:12]} ({action_id})",
            f"--trailer=Incident: {incident_id}",
            f"--trailer=Reverts: {fix['commit']}",
        )
        commit = git(tree, "rev-parse", "HEAD")
        signed = git(tree, "log", "-1", "--format=%G?", commit, check=False) not in ("", "N")
        patch = git_bytes(tree, "format-patch", "-1", "--stdout", commit)
    return Fix(str(repo), branch, base, main, commit, list(fix.get("files") or []), signed), patch
