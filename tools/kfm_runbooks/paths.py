"""Where things are: the one module that decides (`kfm-runbook where` prints its answers).

Decided the way git decides, from the most explicit to the most implicit::

    runbook library   --library DIR (repeatable) / $KFM_RUNBOOK_LIBRARY (DIR:DIR...) /
                      the nearest runbooks/ holding TEMPLATE_runbook.ipynb above the
                      current folder; the packaged library is always stacked last
    incident root     --root / $KFM_INCIDENT_ROOT / the nearest incident_cases/ above the
                      current folder / ./incident_cases; never inside the installation
    default sandbox   $KFM_SANDBOX_DIR / <project>/.kfm/sandbox, where <project> is the
                      nearest folder above the current one holding a runbook library or
                      incident_cases/, else the current folder
    repository        the folder holding the top library (goldens in tests/golden there)

The packaged data (the library, the kernelspec, the golden sanitizer) is read with
`importlib.resources` from `kfm_runbooks/_data/`, where the wheel carries the top-level
`runbooks/`, `kernels/` and `tests/golden/sanitize.cfg` (pyproject's package-dir maps
them). A development checkout (editable install or PYTHONPATH) has no `_data/`: its
top-level folders are the packaged data. This is the only module that knows where the
package sits in a checkout.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from .errors import InputError, SetupError

PACKAGE = "kfm_runbooks"
DISTRIBUTION = "kfm-runbooks"
LIBRARY_ENV = "KFM_RUNBOOK_LIBRARY"
LEGACY_LIBRARY_ENV = "KFM_RUNBOOKS_DIR"  # deprecated alias of LIBRARY_ENV
ROOT_ENV = "KFM_INCIDENT_ROOT"
SANDBOX_ENV = "KFM_SANDBOX_DIR"
TEMPLATE = "TEMPLATE_runbook.ipynb"
LIBRARY_DIR = "runbooks"
INCIDENTS_DIR = "incident_cases"


@dataclass(frozen=True)
class Location:
    """A decided location and why it was chosen (shown by `kfm-runbook where`)."""

    path: Path
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "reason": self.reason}


# --- the installation and its data ---------------------------------------------------


def package_dir() -> Path:
    """The installed `kfm_runbooks` package folder."""
    return Path(str(files(PACKAGE))).resolve()


def schema(name: str) -> Path:
    """A JSON Schema the package ships (schemas/*.json; `kfm-runbook schema` writes them)."""
    return package_dir() / "schemas" / name


def checkout() -> Path | None:
    """The source checkout the package runs from (editable install, PYTHONPATH), if any."""
    package = package_dir()
    candidate = package.parents[1]
    if (
        package.parent.name == "tools"
        and (candidate / "pyproject.toml").is_file()
        and (candidate / LIBRARY_DIR / TEMPLATE).is_file()
    ):
        return candidate
    return None


def packaged(name: str) -> Path:
    """A packaged data folder or file: `runbooks`, `kernels`, `golden/sanitize.cfg`."""
    wheel = package_dir() / "_data" / name
    if wheel.exists():
        return wheel
    source = checkout()
    if source is not None:
        in_checkout = source / ("tests/" + name if name.startswith("golden/") else name)
        if in_checkout.exists():
            return in_checkout
    raise SetupError(
        f"the installed kfm-runbooks has no packaged {name} (looked in {wheel}): "
        f"reinstall it (`pip install --force-reinstall {DISTRIBUTION}`)"
    )


def packaged_library() -> Path:
    return packaged(LIBRARY_DIR)


def kernelspec_source(name: str) -> Path:
    """The packaged kernelspec folder `name` (kernels/<name>/kernel.json)."""
    return packaged("kernels") / name


def installation() -> list[Path]:
    """Folders that belong to the installation: incident data never goes inside them."""
    found = [Path(sys.prefix), Path(sys.exec_prefix), package_dir()]
    if checkout() is None:
        found.append(package_dir().parent)  # site-packages (a --user install lives there)
    out: list[Path] = []
    for path in found:
        resolved = path.resolve()
        if resolved != Path(resolved.anchor) and resolved not in out:
            out.append(resolved)
    return out


def inside_installation(path: Path) -> Path | None:
    """The installation folder `path` is inside of, or None."""
    resolved = path.expanduser().resolve()
    for folder in installation():
        if resolved == folder or resolved.is_relative_to(folder):
            return folder
    return None


# --- the runbook library --------------------------------------------------------------

_LIBRARY_OVERRIDE: ContextVar[tuple[Path, ...] | None] = ContextVar(
    "kfm_library_override", default=None
)


@contextmanager
def library_override(folders: Sequence[Path] | None) -> Iterator[None]:
    """Use `folders` as the libraries named on the command line (`--library`) in this block."""
    token = _LIBRARY_OVERRIDE.set(tuple(folders) if folders else None)
    try:
        yield
    finally:
        _LIBRARY_OVERRIDE.reset(token)


def _cwd(cwd: Path | None) -> Path:
    return (cwd or Path.cwd()).resolve()


def _above(start: Path) -> Iterator[Path]:
    yield start
    yield from start.parents


def find_library_above(cwd: Path | None = None) -> Path | None:
    """The nearest `runbooks/` holding TEMPLATE_runbook.ipynb, from `cwd` upwards."""
    for folder in _above(_cwd(cwd)):
        if (folder / LIBRARY_DIR / TEMPLATE).is_file():
            return folder / LIBRARY_DIR
    return None


def _named_libraries(value: str, reason: str) -> list[Location]:
    out = []
    for item in value.split(os.pathsep):
        if item.strip():
            out.append(Location(Path(item).expanduser().resolve(), reason))
    return out


def library_stack(cwd: Path | None = None) -> list[Location]:
    """The runbook libraries, top first; the packaged library is always the last layer."""
    chosen: list[Location] = []
    override = _LIBRARY_OVERRIDE.get()
    if override:
        chosen = [Location(Path(p).expanduser().resolve(), "--library") for p in override]
    elif os.environ.get(LIBRARY_ENV):
        chosen = _named_libraries(os.environ[LIBRARY_ENV], f"${LIBRARY_ENV}")
    elif os.environ.get(LEGACY_LIBRARY_ENV):
        chosen = _named_libraries(
            os.environ[LEGACY_LIBRARY_ENV],
            f"${LEGACY_LIBRARY_ENV} (deprecated: use ${LIBRARY_ENV})",
        )
    else:
        found = find_library_above(cwd)
        if found is not None:
            chosen = [Location(found, f"nearest {LIBRARY_DIR}/ with {TEMPLATE} above {_cwd(cwd)}")]
    for location in chosen:
        if not location.path.is_dir():
            raise InputError(
                f"runbook library {location.path} (from {location.reason}) is not a folder: "
                "fix the path, or create a runbook repository with `kfm-runbook init DIR`"
            )
    packaged_path = packaged_library().resolve()
    stack = [loc for loc in chosen if loc.path != packaged_path]
    if any(loc.path == packaged_path for loc in chosen):
        reason = next(loc.reason for loc in chosen if loc.path == packaged_path)
        stack.append(Location(packaged_path, f"{reason}; also the packaged library"))
    else:
        stack.append(Location(packaged_path, _packaged_reason()))
    return stack


def _packaged_reason() -> str:
    source = checkout()
    where = f"the development checkout {source}" if source else "the installed package"
    return f"packaged library ({where}), always the last layer"


def is_packaged(path: Path) -> bool:
    """True for the packaged library of an installed wheel (read-only: not a repository)."""
    return path.resolve() == packaged_library().resolve() and checkout() is None


def top_library(cwd: Path | None = None) -> Location:
    """The library `new`, `index` and `lint` work on: the top layer of the stack."""
    return library_stack(cwd)[0]


def repository(cwd: Path | None = None) -> Location:
    """The runbook repository (the folder holding the top library): goldens live there."""
    top = top_library(cwd)
    if is_packaged(top.path):
        raise InputError(
            f"no runbook repository here ({_cwd(cwd)} has no {LIBRARY_DIR}/{TEMPLATE} above "
            "it): run this inside a repository made by `kfm-runbook init DIR`, or pass "
            "--library DIR/runbooks"
        )
    return Location(top.path.parent, f"holds the top library {top.path}")


def writable_library(cwd: Path | None = None) -> Path:
    """The top library when it belongs to a repository (`new` and `index` write there)."""
    return repository(cwd).path / top_library(cwd).path.name


# --- incidents and the sandbox --------------------------------------------------------


def _refuse_installation(path: Path, what: str, reason: str) -> None:
    folder = inside_installation(path)
    if folder is not None:
        raise InputError(
            f"{what} {path} (from {reason}) is inside the kfm-runbooks installation "
            f"{folder}: incident data never goes there; run from your own folder or pass "
            f"--root / ${ROOT_ENV}"
        )


def incident_root(root: str | Path | None = None, cwd: Path | None = None) -> Location:
    """--root / $KFM_INCIDENT_ROOT / nearest incident_cases/ above cwd / ./incident_cases."""
    here = _cwd(cwd)
    if root is not None and str(root) != "":
        location = Location(Path(root).expanduser().resolve(), "--root")
    elif os.environ.get(ROOT_ENV):
        location = Location(Path(os.environ[ROOT_ENV]).expanduser().resolve(), f"${ROOT_ENV}")
    else:
        found = next((f for f in _above(here) if (f / INCIDENTS_DIR).is_dir()), None)
        if found is not None:
            location = Location(found / INCIDENTS_DIR, f"nearest {INCIDENTS_DIR}/ above {here}")
        else:
            location = Location(here / INCIDENTS_DIR, f"none found above {here}: ./{INCIDENTS_DIR}")
    _refuse_installation(location.path, "incident root", location.reason)
    return location


def project_dir(cwd: Path | None = None) -> Path:
    """The nearest folder holding a runbook library or incident_cases/, else the cwd."""
    here = _cwd(cwd)
    for folder in _above(here):
        if (folder / LIBRARY_DIR / TEMPLATE).is_file() or (folder / INCIDENTS_DIR).is_dir():
            return folder
    return here


def sandbox_dir(cwd: Path | None = None) -> Location:
    """$KFM_SANDBOX_DIR / <project>/.kfm/sandbox (the default target of `run`)."""
    if os.environ.get(SANDBOX_ENV):
        location = Location(Path(os.environ[SANDBOX_ENV]).expanduser().resolve(), f"${SANDBOX_ENV}")
    else:
        project = project_dir(cwd)
        location = Location(project / ".kfm" / "sandbox", f".kfm/sandbox in the project {project}")
    folder = inside_installation(location.path)
    if folder is not None:
        raise InputError(
            f"default sandbox {location.path} (from {location.reason}) is inside the "
            f"kfm-runbooks installation {folder}: run from your own folder or set "
            f"${SANDBOX_ENV}"
        )
    return location


# --- the golden harness of a repository ------------------------------------------------


def golden_dir(cwd: Path | None = None) -> Path:
    return repository(cwd).path / "tests" / "golden"


def golden_sanitizer(cwd: Path | None = None) -> Path:
    """The repository's tests/golden/sanitize.cfg, else the packaged one."""
    own = golden_dir(cwd) / "sanitize.cfg"
    return own if own.is_file() else packaged("golden/sanitize.cfg")


def kfm_sample(cwd: Path | None = None) -> Path:
    """KFM's sample data for `kfm:` golden targets: tests/kfm_sample in the repository."""
    return repository(cwd).path / "tests" / "kfm_sample"
