"""Generate the README's command reference from `kfm-runbook --help` (sqlite-utils/cog style).

python tools/cli_reference.py --write   # regenerate the block in README.md
python tools/cli_reference.py --check   # fail (exit 1) when README.md is stale
"""

from __future__ import annotations

import sys

import click
from click.testing import CliRunner

from kfm_runbooks import paths
from kfm_runbooks.cli import main

_CHECKOUT = paths.checkout()
if _CHECKOUT is None:
    raise SystemExit("cli_reference.py runs in a development checkout (make venv), not a wheel")
README = _CHECKOUT / "README.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def _commands(group: click.Group, prefix: list[str]) -> list[list[str]]:
    found = [prefix]
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            found += _commands(command, [*prefix, name])
        else:
            found.append([*prefix, name])
    return found


def reference() -> str:
    runner = CliRunner()
    parts = [START, ""]
    for path in _commands(main, []):
        result = runner.invoke(main, [*path, "--help"], terminal_width=100)
        title = " ".join(["kfm-runbook", *path])
        parts += [f"### `{title}`", "", "```", result.output.rstrip(), "```", ""]
    parts.append(END)
    return "\n".join(parts)


def main_(argv: list[str]) -> int:
    text = README.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = head + reference() + tail
    if "--write" in argv:
        README.write_text(new)
        return 0
    if new != text:
        print("README.md command reference is stale: run `python tools/cli_reference.py --write`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
