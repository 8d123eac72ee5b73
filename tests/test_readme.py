"""The README's promises: its first commands, the CI hook, a documented CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from kfm_runbooks.cli import main

from .conftest import KFM_BIN, ROOT


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci/run").read_text()


def _walk(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in group.commands.items():
        out.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            out += _walk(command, f"{prefix}{name} ")
    return out


def test_every_command_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, command in _walk(main):
        assert command.help and command.help.strip(), f"{name} has no docstring"
        assert f"### `kfm-runbook {name}`" in readme, f"{name} missing from README reference"
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{name} {param.opts} has no help"


def test_installed_console_script_runs(root: Path) -> None:
    result = subprocess.run([str(KFM_BIN), "--help"], capture_output=True, text=True, check=True)
    assert "Exit codes" in result.stdout and "verify" in result.stdout
