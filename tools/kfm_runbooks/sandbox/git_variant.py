"""The sandbox as a GitOps repository: its data under git, with a bare origin beside it.

`kfm-runbook sandbox create DIR --git` builds the usual sandbox, then makes DIR a git
repository on branch `main` with history (one commit for the healthy catalog and the
records, one for the seeded faults' notes), and a bare repository `DIR.origin.git` as its
`origin`, pushed. The running-service side (`live/`: state, secrets, logs) and write
areas are ignored, as a real deployment would keep them out of git. PR-first recovery
steps (record.pr_action) then make their fixes as branches and commits here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import SetupError

IGNORED = ["live/", ".kfm-runbooks/", "**/quarantine/", "**/.quarantine/", "**/withheld/"]
AUTHOR = ["-c", "user.name=kfm-sandbox", "-c", "user.email=sandbox@kfm.invalid"]


def _git(folder: Path, *args: str) -> None:
    try:
        subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            check=True,
            timeout=120,
        )
    except FileNotFoundError as exc:
        raise SetupError("git is not installed: install git to build the --git sandbox") from exc
    except subprocess.CalledProcessError as exc:
        lines = exc.stderr.decode(errors="replace").strip().splitlines()
        raise SetupError(f"git {args[0]} failed: {lines[-1] if lines else exc}") from exc


def origin_of(folder: Path) -> Path:
    return folder.with_name(folder.name + ".origin.git")


def make_repository(folder: Path) -> Path:
    """Put the sandbox in `folder` under git with history and a bare origin; returns it."""
    origin = origin_of(folder)
    if origin.exists():
        raise SetupError(f"{origin} exists: remove it or build the sandbox elsewhere")
    (folder / ".gitignore").write_text("".join(f"{p}\n" for p in IGNORED))
    _git(folder, "init", "--quiet", "--initial-branch=main")
    _git(folder, "add", "--all", "--", ".", ":!SANDBOX.md")
    _git(folder, *AUTHOR, "commit", "--quiet", "-m", "sandbox: catalog, records and target")
    _git(folder, "add", "SANDBOX.md")
    _git(folder, *AUTHOR, "commit", "--quiet", "-m", "sandbox: notes on the seeded faults")
    _git(folder.parent, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    _git(folder, "remote", "add", "origin", str(origin))
    _git(folder, "push", "--quiet", "--set-upstream", "origin", "main")
    return origin
