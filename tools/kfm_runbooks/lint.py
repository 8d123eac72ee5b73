"""`kfm-runbook lint`: the runbook standard as checks, reported like a compiler.

Each finding names the file, the cell (index and id), a rule code, what is wrong and how
to fix it. Rule codes (README has the table):

    RB001 unreadable or invalid notebook        RB030 no `parameters` cell
    RB002 not nbformat 4.5 (no cell ids)        RB031 more than one `parameters` cell
    RB003 duplicate cell id                     RB032 required parameter missing
    RB004 cell id looks generated (warning)     RB033 unsafe default (apply must be False)
    RB010 no kfm_runbook metadata               RB034 parameters cell holds more than literals
    RB011 metadata field invalid                RB035 `apply` assigned outside parameters
    RB012 file name is not the id               RB040 stored outputs
    RB013 folder / id is not the domain         RB041 stored execution counts
    RB014 related runbook does not exist        RB050 secret or credential in a source
    RB020 required section missing              RB060 kernelspec is not the project kernel
    RB021 sections out of order                 RB070 code cell without a phase tag
    RB022 section repeated                      RB071 unknown or several phase tags
    RB080 TODO marker (warning)                 RB072 changes-target cell bypasses run.action
                                                RB073 run.action outside a changes-target cell
                                                RB074 changes-target outside containment/
                                                      recovery/rollback
                                                RB075 no verification cell with run.check
                                                RB076 verification check without coverage
                                                RB077 undo op not in checks/undo.py
                                                RB078 pr-first tag and run.pr_action disagree
                                                RB079 pr-first outside recovery

Fast by design: notebooks are read as JSON, the parameters cell is parsed with `ast`
(no papermill), so the whole library lints in a fraction of a second.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import redact
from .checks.undo import UNDO_OPS
from .errors import InputError
from .ids import RUNBOOK_ID_RE
from .runbook import REQUIRED_PARAMETERS, libraries
from .standard import (
    CHANGES_TARGET,
    CHANGING_PHASES,
    FOREIGN_TAGS,
    KERNEL_NAME,
    METADATA_KEY,
    PHASES,
    PR_FIRST,
    PR_FIRST_PHASES,
    SECTIONS,
    RunbookMeta,
)

TEMPLATE_NAME = "TEMPLATE_runbook.ipynb"
_SECTION_RE = re.compile(r"^##\s+(\d+)\.\s+(.+?)\s*$", re.MULTILINE)
_TODO_RE = re.compile(r"\bTODO\b")
_GENERATED_ID_RE = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){0,4}[0-9a-f-]*$")
_ACTION_RE = re.compile(r"\brun\.action\(")
_CHECK_RE = re.compile(r"\brun\.check\(")


def _parse(source: str) -> ast.Module | None:
    """The cell's syntax tree when a rule needs it (None: no need, or not valid Python)."""
    if "run." not in source and "apply" not in source:
        return None
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _assigns_apply(source: str, tree: ast.Module | None) -> bool:
    """Does the code bind, rebind or delete `apply` (or a `.apply` attribute)? The runner
    decides the mode; a notebook variable never does."""
    if "apply" not in source:
        return False
    if tree is None:
        return bool(re.search(r"(?m)^\s*apply\s*(?::[^=]*)?[-+*/|&^]?=(?!=)", source))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "apply" and not isinstance(node.ctx, ast.Load):
            return True
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "apply"
            and not isinstance(node.ctx, ast.Load)
        ):
            return True
        if isinstance(node, ast.Global | ast.Nonlocal) and "apply" in node.names:
            return True
        if isinstance(node, ast.alias) and (node.asname or node.name) == "apply":
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and (
            node.name == "apply"
        ):
            return True
        if (
            isinstance(node, ast.Subscript)
            and not isinstance(node.ctx, ast.Load)
            and isinstance(node.slice, ast.Constant)
            and node.slice.value == "apply"
        ):
            return True  # globals()["apply"] = ...
    return False


def _run_calls(source: str, tree: ast.Module | None) -> set[str]:
    """Methods the code calls on the recorder `run` (ast: comments and strings don't count)."""
    if "run." not in source:
        return set()
    if tree is None:  # fall back to text for cells that are not valid Python yet
        return {m for m, rx in (("action", _ACTION_RE), ("check", _CHECK_RE)) if rx.search(source)}
    return {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "run"
    }


def _unknown_undo_ops(tree: ast.Module | None) -> list[tuple[int, str]]:
    """(line, name) of every `{"op": "<name>"}` literal passed as `undo=` (also inside the
    lambda that builds it) whose name is not in the undo table: rollback could not run it."""
    if tree is None:
        return []
    unknown = []
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        for keyword in call.keywords:
            if keyword.arg != "undo":
                continue
            for node in ast.walk(keyword.value):
                if not isinstance(node, ast.Dict):
                    continue
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "op"
                        and isinstance(value, ast.Constant)
                        and value.value not in UNDO_OPS
                    ):
                        unknown.append((value.lineno, str(value.value)))
    return unknown


def _uncovered_checks(source: str) -> list[int]:
    """Line numbers of `run.check(...)` calls that could record a PASS without coverage.

    A check states its coverage with `examined=` and `in_scope=` (or `coverage=`); a call
    whose status is the literal "HOLD" / "FAIL" / False can never pass and needs none.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "check"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "run"
        ):
            continue
        keywords = {k.arg for k in node.keywords}
        if "coverage" in keywords or {"examined", "in_scope"} <= keywords:
            continue
        status = node.args[1] if len(node.args) > 1 else None
        for keyword in node.keywords:
            if keyword.arg == "status":
                status = keyword.value
        if isinstance(status, ast.Constant) and status.value in ("HOLD", "FAIL", False):
            continue
        lines.append(node.lineno)
    return sorted(lines)


@dataclass(frozen=True)
class LintFinding:
    path: str
    cell_index: int | None
    cell_id: str | None
    code: str
    severity: str  # error | warning
    message: str
    fix: str

    def format(self) -> str:
        where = self.path
        if self.cell_index is not None:
            where += f":cell {self.cell_index}" + (f" [{self.cell_id}]" if self.cell_id else "")
        return f"{where}: {self.severity} {self.code}: {self.message} — fix: {self.fix}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Collector:
    def __init__(self, path: str) -> None:
        self.path = path
        self.found: list[LintFinding] = []

    def add(
        self,
        code: str,
        message: str,
        fix: str,
        *,
        cell: tuple[int, str | None] | None = None,
        severity: str = "error",
    ) -> None:
        index, cell_id = cell if cell is not None else (None, None)
        self.found.append(LintFinding(self.path, index, cell_id, code, severity, message, fix))


def _source(cell: dict[str, Any]) -> str:
    value = cell.get("source", "")
    return "".join(value) if isinstance(value, list) else str(value)


def _tags(cell: dict[str, Any]) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _display(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def lint_file(path: Path, library: Path | None = None) -> list[LintFinding]:
    out = _Collector(_display(path))
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        out.add(
            "RB001",
            f"not a readable notebook ({type(exc).__name__})",
            "restore the file from git or re-save it from JupyterLab",
        )
        return out.found
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        out.add("RB001", "not a notebook (no cells list)", "restore the file from git")
        return out.found
    _check_format(nb, out)
    cells: list[dict[str, Any]] = [c for c in nb["cells"] if isinstance(c, dict)]
    is_template = path.name == TEMPLATE_NAME
    _check_metadata(nb, path, [library] if library else libraries(), is_template, out)
    _check_sections(cells, out)
    _check_parameters(cells, out)
    _check_cells(cells, out)
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel != KERNEL_NAME:
        out.add(
            "RB060",
            f"kernelspec is {kernel!r}, not {KERNEL_NAME!r}",
            f"select the '{KERNEL_NAME}' kernel (Kernel > Change Kernel) and save",
        )
    return out.found


def _check_format(nb: dict[str, Any], out: _Collector) -> None:
    import nbformat

    with warnings.catch_warnings():
        # nbformat "repairs" duplicate ids with a warning; we report them as RB003 instead.
        warnings.simplefilter("ignore")
        try:
            nbformat.validate(nbformat.from_dict(copy.deepcopy(nb)))
        except nbformat.ValidationError as exc:
            first = str(exc).splitlines()[0]
            out.add("RB001", f"invalid nbformat 4 notebook: {first}", "re-save it from JupyterLab")
    major, minor = nb.get("nbformat"), nb.get("nbformat_minor")
    if not (isinstance(major, int) and isinstance(minor, int) and (major, minor) >= (4, 5)):
        out.add(
            "RB002",
            f"nbformat {major}.{minor}: cells have no stable ids",
            "upgrade to nbformat 4.5 and give each cell a meaningful id",
        )
    seen: dict[str, int] = {}
    for index, cell in enumerate(nb["cells"]):
        cell_id = cell.get("id") if isinstance(cell, dict) else None
        if not isinstance(cell_id, str):
            continue
        if cell_id in seen:
            out.add(
                "RB003",
                f"cell id {cell_id!r} also used by cell {seen[cell_id]}",
                "give every cell a unique id",
                cell=(index, cell_id),
            )
        seen[cell_id] = index
        if _GENERATED_ID_RE.match(cell_id) and len(cell_id) >= 8:
            out.add(
                "RB004",
                f"cell id {cell_id!r} looks generated",
                "use a short meaningful id (e.g. 'triage-scan'): ids anchor reviews",
                cell=(index, cell_id),
                severity="warning",
            )


def _check_metadata(
    nb: dict[str, Any], path: Path, library: list[Path], is_template: bool, out: _Collector
) -> None:
    from pydantic import ValidationError

    meta = nb.get("metadata", {}).get(METADATA_KEY)
    if not isinstance(meta, dict):
        out.add(
            "RB010",
            f"no '{METADATA_KEY}' front matter in the notebook metadata",
            "start from `kfm-runbook new DOMAIN SLUG --title ...` or copy the TEMPLATE's",
        )
        return
    try:
        RunbookMeta.model_validate(meta)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "(root)"
            out.add(
                "RB011",
                f"metadata {field}: {error['msg']}",
                "see schemas/runbook.schema.json for the allowed values",
            )
    for key in ("title", "owners", "signals", "tags"):
        if _TODO_RE.search(json.dumps(meta.get(key, ""))):
            out.add(
                "RB080", f"metadata {key} still has a TODO marker", "fill it in", severity="warning"
            )
    if is_template:
        return
    runbook_id = meta.get("id")
    if runbook_id != path.stem:
        out.add(
            "RB012",
            f"file name {path.name} does not match id {runbook_id!r}",
            f"rename the file to {runbook_id}.ipynb or fix metadata id",
        )
    domain = meta.get("domain")
    match = RUNBOOK_ID_RE.fullmatch(str(runbook_id))
    if path.parent.name != domain or (match and match.group(1) != domain):
        out.add(
            "RB013",
            f"domain {domain!r}: file is in {path.parent.name}/ and id says "
            f"{match.group(1) if match else '?'}",
            f"keep runbooks/<domain>/RBK-<domain>-<slug>.ipynb consistent ({domain})",
        )
    for related in meta.get("related", []) or []:
        related_match = RUNBOOK_ID_RE.fullmatch(str(related))
        exists = related_match and any(
            (folder / related_match.group(1) / f"{related}.ipynb").is_file() for folder in library
        )
        if not exists:
            out.add(
                "RB014",
                f"related runbook {related} does not exist in {', '.join(str(f) for f in library)}",
                "fix the id or remove it from related",
            )


def _check_sections(cells: list[dict[str, Any]], out: _Collector) -> None:
    found: list[tuple[int, int, str, str | None]] = []  # (number, cell index, title, id)
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "markdown":
            continue
        for match in _SECTION_RE.finditer(_source(cell)):
            found.append((int(match.group(1)), index, match.group(2), cell.get("id")))
    by_title: dict[str, tuple[int, int]] = {}
    for number, index, title, cell_id in found:
        if title in by_title:
            out.add(
                "RB022",
                f"section '{title}' appears twice",
                "merge the two sections",
                cell=(index, cell_id),
            )
        by_title.setdefault(title, (number, index))
    for position, title in enumerate(SECTIONS, start=1):
        if title not in by_title:
            out.add(
                "RB020",
                f"required section {position}. {title} is missing",
                f"add a markdown heading '## {position}. {title}'",
            )
    order = [SECTIONS.index(t) for _, _, t, _ in found if t in SECTIONS]
    if order != sorted(order):
        out.add(
            "RB021",
            "the 13 required sections are not in the seed's order",
            "order them 1. Summary ... 13. Hardening Tasks",
        )
    for number, index, title, cell_id in found:
        if title in SECTIONS and number != SECTIONS.index(title) + 1:
            out.add(
                "RB021",
                f"section '{title}' is numbered {number}",
                f"number it {SECTIONS.index(title) + 1}",
                cell=(index, cell_id),
            )


def _check_parameters(cells: list[dict[str, Any]], out: _Collector) -> None:
    indexes = [i for i, c in enumerate(cells) if "parameters" in _tags(c)]
    if not indexes:
        out.add(
            "RB030",
            "no cell tagged 'parameters'",
            "tag the cell assigning incident_id, workspace, target, apply with 'parameters'",
        )
        return
    for extra in indexes[1:]:
        out.add(
            "RB031",
            "second cell tagged 'parameters'",
            "keep exactly one",
            cell=(extra, cells[extra].get("id")),
        )
    index = indexes[0]
    cell = cells[index]
    where = (index, cell.get("id"))
    try:
        tree = ast.parse(_source(cell))
    except SyntaxError:
        out.add("RB034", "parameters cell is not valid Python", "fix the syntax", cell=where)
        return
    defaults: dict[str, Any] = {}
    for node in tree.body:
        target = (
            node.targets[0]
            if isinstance(node, ast.Assign) and len(node.targets) == 1
            else (node.target if isinstance(node, ast.AnnAssign) else None)
        )
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if not isinstance(target, ast.Name) or value is None:
            out.add(
                "RB034",
                "parameters cell may only assign literal defaults",
                "move other code to the setup cell",
                cell=where,
            )
            continue
        try:
            defaults[target.id] = ast.literal_eval(value)
        except ValueError:
            out.add(
                "RB034",
                f"default of {target.id} is not a literal",
                "use a literal default (str, number, bool, None, list, dict)",
                cell=where,
            )
    missing = [name for name in REQUIRED_PARAMETERS if name not in defaults]
    if missing:
        out.add(
            "RB032",
            f"parameters cell does not declare {', '.join(missing)}",
            "declare incident_id, workspace, target and apply (see the TEMPLATE)",
            cell=where,
        )
    if "apply" in defaults and defaults["apply"] is not False:
        out.add(
            "RB033",
            f"apply defaults to {defaults['apply']!r}",
            "set `apply = False`: a runbook changes nothing unless asked",
            cell=where,
        )


def _check_cells(cells: list[dict[str, Any]], out: _Collector) -> None:
    verification_checks = False
    for index, cell in enumerate(cells):
        where = (index, cell.get("id"))
        source = _source(cell)
        for name, _start, _end in redact.find(source):
            out.add(
                "RB050",
                f"{name} in the source",
                "remove it and rotate it; read secrets from the target or environment",
                cell=where,
            )
        if _TODO_RE.search(source):
            out.add("RB080", "TODO marker", "finish the step", cell=where, severity="warning")
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            out.add(
                "RB040",
                "cell has stored outputs",
                "clear outputs before committing (Edit > Clear All Outputs)",
                cell=where,
            )
        if cell.get("execution_count") is not None:
            out.add(
                "RB041",
                "cell has an execution count",
                "clear outputs before committing",
                cell=where,
            )
        tags = _tags(cell)
        if "parameters" in tags:
            continue
        tree = _parse(source)
        if _assigns_apply(source, tree):
            out.add(
                "RB035",
                "`apply` is assigned outside the parameters cell",
                "remove it: the mode comes from `kfm-runbook run/open [--apply]`, and a "
                "notebook that reassigns it is refused at rb.start",
                cell=where,
            )
        phases = [t for t in tags if t in PHASES]
        unknown = [
            t
            for t in tags
            if t not in PHASES and t not in FOREIGN_TAGS and t not in (CHANGES_TARGET, PR_FIRST)
        ]
        if not phases:
            out.add(
                "RB070",
                "code cell has no phase tag",
                f"tag it with one of: {', '.join(PHASES)}",
                cell=where,
            )
        if len(phases) > 1 or unknown:
            out.add(
                "RB071",
                f"tags {phases + unknown} are not exactly one known phase",
                f"use one of {', '.join(PHASES)} (+ '{CHANGES_TARGET}' where it applies)",
                cell=where,
            )
        changes = CHANGES_TARGET in tags
        calls = _run_calls(source, tree)
        calls_action = bool(calls & {"action", "pr_action", "manual_action"})
        pr_first = PR_FIRST in tags
        if pr_first != ("pr_action" in calls):
            out.add(
                "RB078",
                "cell calls run.pr_action(...) but is not tagged pr-first"
                if not pr_first
                else "pr-first cell does not go through run.pr_action(...)",
                f"tag PR-first steps '{PR_FIRST}' and make their change with run.pr_action "
                "(a commit on a branch, never an edit of the checkout)",
                cell=where,
            )
        if pr_first and phases and phases[0] not in PR_FIRST_PHASES:
            out.add(
                "RB079",
                f"pr-first in a {phases[0]} cell",
                "containment stays direct (it stops the bleeding now); PR-first steps are "
                f"{', '.join(PR_FIRST_PHASES)} steps",
                cell=where,
            )
        if changes and not calls_action:
            out.add(
                "RB072",
                "changes-target cell does not go through run.action(...)",
                "wrap every state change in run.action(..., change=...) (the apply gate)",
                cell=where,
            )
        if calls_action and not changes:
            out.add(
                "RB073",
                "cell calls run.action(...) but is not tagged changes-target",
                f"add the '{CHANGES_TARGET}' tag",
                cell=where,
            )
        if changes and phases and phases[0] not in CHANGING_PHASES:
            out.add(
                "RB074",
                f"changes-target in a {phases[0]} cell",
                f"state changes belong in {', '.join(CHANGING_PHASES)} cells",
                cell=where,
            )
        for line, name in _unknown_undo_ops(tree):
            out.add(
                "RB077",
                f"undo op {name!r} on line {line} is not in checks/undo.py",
                "use a name from kfm_runbooks.checks.undo.UNDO_OPS (a typo surfaces only at "
                "rollback, in an incident), or add the operation to the table",
                cell=where,
            )
        if "verification" in phases and "check" in calls:
            verification_checks = True
            for line in _uncovered_checks(source):
                out.add(
                    "RB076",
                    f"run.check(...) on line {line} may record a PASS without coverage",
                    "pass examined=N, in_scope=M (what was verified of what was in scope): "
                    "a PASS needs everything in scope verified",
                    cell=where,
                )
    if not verification_checks:
        out.add(
            "RB075",
            "no verification cell records a check",
            "add a cell tagged 'verification' that calls run.check(...)",
        )


def collect(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path} does not exist: pass runbook files or folders")
    return files


def lint_paths(paths: list[Path], library: Path | None = None) -> list[LintFinding]:
    found: list[LintFinding] = []
    for file in collect(paths):
        found += lint_file(file, library)
    return found
