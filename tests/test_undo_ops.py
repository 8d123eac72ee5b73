"""Undo operations: persisted names resolve through one explicit table, forever."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

from kfm_runbooks import checks
from kfm_runbooks.checks.undo import UNDO_OPS, UnknownUndoOpError, undo_op
from kfm_runbooks.errors import EXIT_BAD_INPUT, InputError
from kfm_runbooks.layout import Workspace

from .conftest import Cli

REPO = Path(__file__).resolve().parents[1]

# Every name a ledger may hold. Never remove one: an old incident must still roll back.
PERSISTED = frozenset(
    {
        "ai_focus.restore_flags",
        "ai_focus.restore_index",
        "api.drop_index",
        "api.set_flag",
        "api.set_role_enforcement",
        "api.unblock_client",
        "catalog.restore_item",
        "catalog.restore_link",
        "catalog_withdraw.restore",
        "graph.freeze",
        "graph.restore_backup_pointer",
        "graph.undo_resync",
        "graph.undo_schema_repair",
        "graph.unfreeze",
        "graph.unlink",
        "graph.unquarantine",
        "infra.reinstall_certificate",
        "infra.remove_backup",
        "infra.restore_backup_job",
        "infra.restore_reclaimed",
        "pipelines.reinstate_release",
        "pipelines.release_promotion",
        "pipelines.release_sync",
        "pipelines.repoint_release",
        "pipelines.restore_run",
        "pipelines.resume_watcher",
        "pipelines.set_change_detection",
        "security_access.unblock",
        "security_layers.restore_layer",
        "security_secrets.remove_rotation",
        "security_secrets.restore_file",
        "security_supply.clear_untrusted",
        "security_wheels.restore_backup",
        "ui_a11y.restore_release",
        "ui_registry.remove_tile_source",
        "ui_registry.republish_layer",
        "ui_registry.withdraw_layer",
        "ui_stories.republish_node",
        "ui_stories.republish_story",
        "ui_stories.set_node_layer",
        "ui_stories.withdraw_node",
        "ui_stories.withdraw_story",
        "ui_timeline.restore_time_index",
    }
)

# Files that hold mistyped names on purpose (they test that a typo is caught).
DELIBERATE_TYPOS = {
    "tests/test_undo_ops.py",
    "tests/test_lint.py",
    "tests/lint_cases/unknown_undo_op.ipynb",
}

# `"op": "x.y"` as Python source, JSON, or JSON holding Python source (escaped quotes).
_OP_RE = re.compile(r'\\*"op\\*"\s*:\s*\\*"([A-Za-z_][\w]*\.[A-Za-z_]\w*)\\*"')


def _recorded_names() -> dict[str, list[str]]:
    """Every undo-op name written anywhere in the runbooks, goldens, fixtures and package."""
    found: dict[str, list[str]] = {}
    roots = [REPO / "runbooks", REPO / "tests", REPO / "tools/kfm_runbooks"]
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix not in {".ipynb", ".json", ".jsonl", ".py", ".md", ".yaml"}:
                continue
            if str(path.relative_to(REPO)) in DELIBERATE_TYPOS or not path.is_file():
                continue
            for name in _OP_RE.findall(path.read_text(encoding="utf-8", errors="replace")):
                found.setdefault(name, []).append(str(path.relative_to(REPO)))
    return found


def test_no_persisted_name_ever_leaves_the_table() -> None:
    assert set(UNDO_OPS) >= PERSISTED, sorted(PERSISTED - set(UNDO_OPS))


def test_every_op_recorded_in_runbooks_goldens_and_fixtures_resolves() -> None:
    found = _recorded_names()
    assert len(found) >= 40, sorted(found)  # the scan really reads the goldens
    for name, where in sorted(found.items()):
        assert name in UNDO_OPS, f"{name} (in {where[0]}) is not in checks/undo.py"
        assert callable(undo_op(name)), name


@pytest.mark.parametrize("name", sorted(UNDO_OPS))
def test_table_entry_resolves_to_the_function_marked_with_its_name(name: str) -> None:
    function = undo_op(name)
    assert getattr(function, "__undo_op__", None) == name, UNDO_OPS[name]


def test_every_marked_function_is_in_the_table() -> None:
    marked: dict[str, str] = {}
    for info in pkgutil.walk_packages(checks.__path__, f"{checks.__name__}."):
        module = importlib.import_module(info.name)
        for attribute, value in vars(module).items():
            name = getattr(value, "__undo_op__", None)
            if name is not None and getattr(value, "__module__", None) == module.__name__:
                marked[name] = f"{module.__name__}:{attribute}"
    assert marked == dict(UNDO_OPS)


def test_resolving_imports_only_the_module_named() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from kfm_runbooks.checks.undo import undo_op\n"
        "undo_op('catalog_withdraw.restore')\n"
        "print(sorted(m for m in sys.modules if m.startswith('kfm_runbooks.checks.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "kfm_runbooks.checks.catalog.withdraw" in out.stdout
    assert "ui_stories" not in out.stdout and "graph" not in out.stdout


@pytest.mark.parametrize("name", ["catalog.restore_itme", "catalog", "", None, 3, "os.system"])
def test_an_unknown_op_is_a_clear_input_error(name: object) -> None:
    with pytest.raises(UnknownUndoOpError) as caught:
        undo_op(name)
    assert isinstance(caught.value, InputError)
    assert f"unknown undo operation {name!r}" in str(caught.value)
    assert "rollback.md" in str(caught.value)


def test_rollback_of_an_action_with_an_unknown_op_exits_2(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, path = incident
    workspace = Workspace(path.parent, incident_id)
    with workspace.locked():
        workspace.record(
            "action",
            {
                "action_id": "ACT-0badc0de",
                "title": "Quarantine x",
                "applied": True,
                "ok": True,
                "undo": {"op": "catalog.restore_itme", "args": {"item_id": "x"}},
                "target": str(sandbox),
            },
            "tester",
        )
    result = cli("rollback", incident_id, "ACT-0badc0de", "--apply")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "ACT-0badc0de: unknown undo operation 'catalog.restore_itme'" in result.stderr
