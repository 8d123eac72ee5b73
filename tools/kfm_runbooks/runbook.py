"""A runbook as data: the notebook file, its hash, metadata, parameters; library discovery.

Runbooks live at `runbooks/<domain>/RBK-<domain>-<slug>.ipynb` in a stack of libraries
(paths.library_stack: a team's own over the packaged one). A runbook is named on the
command line by id, or by a path to an .ipynb file; ids are validated so they cannot walk
out of the library, and an id defined in two libraries is an error naming both files.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from . import paths
from ._fs import sha256_bytes
from .errors import (
    InputError,
    InvalidIdError,
    NotebookFormatError,
    ParameterError,
    RunbookNotFoundError,
)
from .ids import RUNBOOK_ID_RE, check_runbook_id

METADATA_KEY = "kfm_runbook"
REQUIRED_PARAMETERS = ("incident_id", "workspace", "target", "apply")


def runbooks_dir() -> Path:
    """The top library of the stack: where `new` writes and `index` / `lint` look."""
    return paths.top_library().path


def libraries() -> list[Path]:
    """Every library of the stack, top first (the packaged one last)."""
    return [location.path for location in paths.library_stack()]


@dataclass(frozen=True)
class Parameter:
    name: str
    type_name: str  # as papermill infers it from the default: str, int, bool, None, ...
    default: str  # the default's source text
    help: str


@dataclass(frozen=True)
class Runbook:
    path: Path
    raw: bytes
    nb: Any  # nbformat.NotebookNode

    @cached_property
    def sha256(self) -> str:
        return sha256_bytes(self.raw)

    @property
    def metadata(self) -> dict[str, Any]:
        value = self.nb.metadata.get(METADATA_KEY, {})
        return dict(value) if isinstance(value, dict) else {}

    @property
    def id(self) -> str:
        """The runbook id: metadata id, else the file name (validated either way)."""
        value = self.metadata.get("id") or self.path.stem
        if not isinstance(value, str) or not RUNBOOK_ID_RE.fullmatch(value):
            if RUNBOOK_ID_RE.fullmatch(self.path.stem):
                return self.path.stem
            return "RBK-adhoc-" + "".join(c if c.isalnum() else "-" for c in self.path.stem.lower())
        return value

    @property
    def title(self) -> str:
        return str(self.metadata.get("title") or self.id)

    @property
    def version(self) -> str:
        return str(self.metadata.get("version") or "0.0.0")

    def parameterized(self, parameters: dict[str, Any], kernel_name: str) -> Any:
        """A deep copy with papermill's injected-parameters cell (papermill's prepare step)."""
        import copy

        from papermill.parameterize import parameterize_notebook

        nb = copy.deepcopy(self.nb)
        # what papermill's own loader adds: a tags list on every cell, papermill metadata
        for cell in nb.cells:
            cell.metadata.setdefault("tags", [])
        nb.metadata.setdefault(
            "papermill", {"default_parameters": {}, "parameters": {}, "environment_variables": {}}
        )
        return parameterize_notebook(nb, parameters, kernel_name=kernel_name, language="python")

    def parameter_cells(self) -> list[int]:
        return [
            index
            for index, cell in enumerate(self.nb.cells)
            if "parameters" in cell.get("metadata", {}).get("tags", [])
        ]

    def parameters(self) -> dict[str, Parameter]:
        """Declared parameters of the one `parameters`-tagged cell; errors name the fix."""
        cells = self.parameter_cells()
        if not cells:
            raise ParameterError(
                f"{self.path.name} has no cell tagged 'parameters': papermill would inject "
                "values above the defaults, which would then override them; tag the cell "
                "that assigns the defaults with 'parameters'"
            )
        if len(cells) > 1:
            raise ParameterError(
                f"{self.path.name} has {len(cells)} cells tagged 'parameters' (cells "
                f"{', '.join(map(str, cells))}): keep exactly one"
            )
        from papermill.translators import PythonTranslator

        declared = {
            p.name: Parameter(
                p.name, _type_name(p.inferred_type_name, p.default), p.default, p.help
            )
            for p in PythonTranslator.inspect(self.nb.cells[cells[0]])
        }
        missing = [name for name in REQUIRED_PARAMETERS if name not in declared]
        if missing:
            raise ParameterError(
                f"{self.path.name}: the parameters cell must declare {', '.join(missing)} "
                "(incident_id, workspace, target, apply are injected into every run)"
            )
        return declared


def _type_name(annotated: str, default: str) -> str:
    """The parameter's type: its annotation, else the type of its literal default."""
    if annotated and annotated != "None":
        return annotated
    try:
        value = ast.literal_eval(default)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "None"
    return "None" if value is None else type(value).__name__


def load(path: Path) -> Runbook:
    """Read and validate a notebook; any problem is a NotebookFormatError with the fix."""
    import nbformat

    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise RunbookNotFoundError(f"runbook file {path} not found") from exc
    except IsADirectoryError as exc:
        raise RunbookNotFoundError(f"{path} is a folder, not a runbook notebook") from exc
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except UnicodeDecodeError as exc:
        raise NotebookFormatError(f"{path.name} is not UTF-8 text: not a notebook") from exc
    except nbformat.ValidationError as exc:
        first = str(exc).splitlines()[0]
        raise NotebookFormatError(
            f"{path.name} is not a valid nbformat 4 notebook ({first}); "
            "open and re-save it in JupyterLab or restore it from git"
        ) from exc
    except Exception as exc:  # nbformat.reads raises json and reader errors of many types
        raise NotebookFormatError(
            f"{path.name} is not a readable notebook ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); restore it from git"
        ) from exc
    return Runbook(path.resolve(), raw, nb)


def _in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*/RBK-*.ipynb") if p.is_file())


def discover(folder: Path | None = None) -> list[Path]:
    """Runbooks of `folder`, or of the whole stack, sorted by id (TEMPLATE excluded).

    An id found in two libraries of the stack is an error naming both files.
    """
    if folder is not None:
        return _in(folder)
    seen: dict[str, Path] = {}
    for library in libraries():
        for path in _in(library):
            if path.stem in seen:
                raise _duplicate(path.stem, seen[path.stem], path)
            seen[path.stem] = path
    return [seen[name] for name in sorted(seen)]


def _duplicate(runbook_id: str, first: Path, second: Path) -> InputError:
    return InputError(
        f"runbook {runbook_id} is defined twice: {first} and {second}; give one a new slug "
        "or take its library off the stack (`kfm-runbook where` shows the stack)"
    )


def find(ref: str) -> Path:
    """A runbook by id (searched in the library) or by path to an .ipynb file."""
    looks_like_id = ref.startswith("RBK-") and not ref.endswith(".ipynb")
    if not looks_like_id and (ref.endswith(".ipynb") or os.sep in ref or "/" in ref):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise RunbookNotFoundError(f"runbook file {ref} not found")
        if path.suffix != ".ipynb":
            raise RunbookNotFoundError(f"{ref} is not an .ipynb notebook")
        return path.resolve()
    check_runbook_id(ref)
    domain = RUNBOOK_ID_RE.fullmatch(ref)
    assert domain is not None
    known = discover()  # raises on an id defined twice anywhere in the stack
    for path in known:
        if path.stem == ref and path.parent.name == domain.group(1):
            return path
    layers = ", ".join(str(p) for p in libraries())
    names = ", ".join(p.stem for p in known) or "none"
    raise RunbookNotFoundError(f"unknown runbook {ref} (libraries: {layers}); known: {names}")


def in_library(book: Runbook) -> bool:
    """True when `book` is, byte for byte, the library runbook its id names (whatever path
    it was given by): an ad-hoc notebook never speaks for a library runbook."""
    try:
        path = find(book.id)
    except (RunbookNotFoundError, InvalidIdError):
        return False
    try:
        return sha256_bytes(path.read_bytes()) == book.sha256
    except OSError:
        return False
