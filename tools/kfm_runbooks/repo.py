"""`kfm-runbook init DIR`: a team's own runbook repository, stacked over the packaged library.

    DIR/
    ├─ runbooks/TEMPLATE_runbook.ipynb, README.md (index), <domain>/
    ├─ incident_cases/README.md        case storage and postmortems
    ├─ targets/example.target.yaml
    ├─ tests/golden/cases/, sanitize.cfg
    ├─ .pre-commit-config.yaml          this project's hooks (.pre-commit-hooks.yaml)
    ├─ .github/workflows/runbooks.yml   lint, index check, goldens
    ├─ .gitattributes, .gitignore       nbdime drivers; evidence and sandboxes not committed
    └─ README.md

The files come from `repo_template/` (package data) with the running version and the
project's source URL filled in. The repository is assembled in a hidden folder beside DIR
and renamed into place: an interrupted `init` leaves nothing half-made.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from . import paths
from ._fs import replace_atomic
from .errors import InputError
from .ids import DOMAINS

# template file -> path in the repository (dot files are stored without their dot)
_RENAMES = {
    "gitignore": ".gitignore",
    "gitattributes": ".gitattributes",
    "pre-commit-config.yaml": ".pre-commit-config.yaml",
    "github-workflow.yml": ".github/workflows/runbooks.yml",
}
# Only for a source tree that was never installed (no metadata): pyproject's Source URL.
DEFAULT_SOURCE_URL = "https://github.com/kfm/kfm-runbooks"


@dataclass
class Created:
    path: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def source_url() -> str:
    """The project's source repository, from the installed distribution's metadata."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls: list[str] = metadata(paths.DISTRIBUTION).get_all("Project-URL") or []
    except PackageNotFoundError:
        return DEFAULT_SOURCE_URL
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "source":
            return str(url).strip()
    return DEFAULT_SOURCE_URL


def _template_files() -> list[tuple[str, bytes]]:
    root = Path(str(files(paths.PACKAGE) / "repo_template"))
    return [
        (path.relative_to(root).as_posix(), path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]


def _check_destination(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InputError(f"{dest} exists and is not an empty folder: choose a new path")
    if paths.inside_installation(dest) is not None:
        raise InputError(f"{dest} is inside the kfm-runbooks installation: choose your own folder")


def _write_tree(folder: Path, domains: list[str]) -> None:
    from . import __version__
    from .library import INDEX_NAME, render_index

    values = {"@VERSION@": __version__, "@SOURCE_URL@": source_url()}
    for name, data in _template_files():
        rel = _RENAMES.get(name, name)
        text = data.decode("utf-8")
        for token, value in values.items():
            text = text.replace(token, value)
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
    library = folder / paths.LIBRARY_DIR
    library.mkdir()
    shutil.copyfile(paths.packaged_library() / paths.TEMPLATE, library / paths.TEMPLATE)
    for domain in domains:
        (library / domain).mkdir(parents=True, exist_ok=True)
        (library / domain / ".gitkeep").write_bytes(b"")
    shutil.copyfile(
        paths.packaged("golden/sanitize.cfg"), folder / "tests" / "golden" / "sanitize.cfg"
    )
    replace_atomic(library / INDEX_NAME, render_index(library).encode())


def _git_setup(dest: Path, notes: list[str]) -> None:
    """git init and nbdime's drivers (when installed), unless DIR is inside a work tree."""
    git = shutil.which("git")
    if git is None:
        notes.append("git not found: run `git init` and `nbdime config-git --enable` there")
        return
    inside = subprocess.run(
        [git, "-C", str(dest), "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        text=True,
        check=False,
    )
    if inside.returncode == 0:
        notes.append("inside an existing git work tree: its git set-up is left as it is")
        return
    subprocess.run([git, "init", "-q", str(dest)], check=True)
    notes.append(f"git repository initialised in {dest}")
    nbdime = Path(sys.executable).parent / "nbdime"
    if nbdime.is_file():
        subprocess.run(
            [str(nbdime), "config-git", "--enable"], cwd=dest, check=True, capture_output=True
        )
        notes.append("nbdime git drivers enabled for this clone")
    else:
        notes.append("notebook diffs: `pip install nbdime && nbdime config-git --enable` there")
    notes.append("hooks: `pre-commit install` there (see .pre-commit-config.yaml)")


def init_repository(
    directory: str | Path, domains: list[str] | None = None, *, git: bool = True
) -> Created:
    """Create a runbook repository in `directory` (new, or an empty folder); `git`: also
    `git init` it (outside a work tree) and enable nbdime's drivers when installed."""
    dest = Path(directory).expanduser().resolve()
    chosen = list(domains or DOMAINS)
    unknown = [d for d in chosen if d not in DOMAINS]
    if unknown:
        raise InputError(f"unknown domain {unknown[0]!r}: choose from {', '.join(DOMAINS)}")
    _check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.init-", dir=dest.parent) as tmp:
        staging = Path(tmp) / "repo"
        staging.mkdir()
        _write_tree(staging, chosen)
        _check_destination(dest)
        staging.replace(dest)  # onto a missing or empty folder: atomic
    created = Created(dest)
    created.files = sorted(p for p in dest.rglob("*") if p.is_file() and ".git" not in p.parts)
    if git:
        _git_setup(dest, created.notes)
    created.notes.append(f"next: cd {dest} && kfm-runbook where && kfm-runbook new DOMAIN SLUG")
    return created
