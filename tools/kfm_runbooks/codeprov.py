"""Code provenance: which code made a run's call (light: kernel-safe, standard library only).

Collected in the kernel, from what it really imported (`collect`):

    package               the distribution name, `kfm-runbooks`
    version               its version, from the installed package metadata
    python                the interpreter (implementation and version)
    distributions_sha256  sha256 of the kernel environment's installed distributions, one
                          canonical text: sorted, unique `name==version` lines (names
                          normalised as in PEP 503), each ending in a newline
    distributions         how many lines that text has
    modules               {path relative to the package: sha256 of the file's bytes} for
                          every `kfm_runbooks` module in `sys.modules` loaded from a file
                          inside the package

`changed_modules` compares recorded digests with the files installed now (`verify --code`).
"""

from __future__ import annotations

import hashlib
import platform
import re
import sys
from pathlib import Path
from typing import Any

from .paths import DISTRIBUTION, PACKAGE, package_dir

_NAME_SEPARATORS = re.compile(r"[-_.]+")


def package_root() -> Path:
    """The folder the `kfm_runbooks` package is imported from here (paths.package_dir)."""
    return package_dir()


def _sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def package_version() -> str:
    """The installed distribution's version (package metadata), `0+unknown` if none."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # a source tree on PYTHONPATH, never installed
        return "0+unknown"


def python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


def distributions_text() -> str:
    """The environment's installed distributions, one canonical text."""
    from importlib.metadata import distributions

    lines = set()
    for dist in distributions():
        name, version = _name_version(dist.read_text("METADATA") or dist.read_text("PKG-INFO"))
        if name:  # a broken .dist-info folder names nothing
            lines.add(f"{_NAME_SEPARATORS.sub('-', name).lower()}=={version}")
    return "".join(f"{line}\n" for line in sorted(lines))


def _name_version(metadata: str | None) -> tuple[str | None, str | None]:
    """Name and Version from a core-metadata header block (read directly: the email parser
    `Distribution.metadata` uses takes a second for a few hundred distributions)."""
    name = version = None
    for line in (metadata or "").splitlines():
        if not line.strip():
            break  # the headers end at the first blank line; the description follows
        key, _, value = line.partition(":")
        if key.lower() == "name" and name is None:
            name = value.strip()
        elif key.lower() == "version" and version is None:
            version = value.strip()
    return name, version


class ModuleDigests:
    """sha256 of each imported `kfm_runbooks` module file, hashed once when first seen."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or package_root()
        self._seen: dict[str, str] = {}  # module name -> relative path ("" when not ours)
        self._digests: dict[str, str] = {}

    def scan(self) -> dict[str, str]:
        """{relative path: sha256} of every package module imported so far."""
        for name, module in list(sys.modules.items()):
            if name in self._seen or not (name == PACKAGE or name.startswith(f"{PACKAGE}.")):
                continue
            self._seen[name] = ""
            file = getattr(getattr(module, "__spec__", None), "origin", None)
            if not isinstance(file, str):
                continue  # a namespace package: no bytes
            path = Path(file).resolve()
            try:
                rel = path.relative_to(self.root).as_posix()
            except ValueError:
                continue  # loaded from outside the package folder
            digest = _sha256_file(path)
            if digest is not None:
                self._seen[name] = rel
                self._digests[rel] = digest
        return dict(sorted(self._digests.items()))


def collect(modules: dict[str, str] | None = None) -> dict[str, Any]:
    """The code provenance of this interpreter now (see the module docstring)."""
    text = distributions_text()
    return {
        "package": DISTRIBUTION,
        "version": package_version(),
        "python": python_version(),
        "distributions_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "distributions": text.count("\n"),
        "modules": ModuleDigests().scan() if modules is None else dict(sorted(modules.items())),
    }


def changed_modules(
    recorded: dict[str, Any], root: Path | None = None
) -> list[dict[str, str | None]]:
    """Each recorded module whose installed bytes (under `root`, default the package this
    process imports) differ now: {"module", "recorded", "installed" (None: gone)}."""
    base = root or package_root()
    changed: list[dict[str, str | None]] = []
    for rel, digest in sorted(recorded.items()):
        path = base / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            installed = None  # never hash outside the package
        else:
            installed = _sha256_file(path)
        if installed != digest:
            changed.append({"module": rel, "recorded": str(digest), "installed": installed})
    return changed
