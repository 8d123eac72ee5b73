"""The sandbox's admin command: what the sandbox target names as `admin.command`.

    live/bin/kfm-sandbox-admin OP   < args.json   > result.json

A production system has its own admin interface (an endpoint, a CLI, a config change
made PR-first); the sandbox's is this command, so runbooks act on the sandbox exactly as
on any system: through the interface its target names. Operations come from the
`admin_<domain>.py` modules next to this one, each exposing `OPS: {name: fn(folder, args)
-> dict}`. Unknown operation, bad JSON or a failing operation: a one-line message on
stderr and exit 2.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Op = Callable[[Path, dict[str, Any]], dict[str, Any]]
SCRIPT = Path("live") / "bin" / "kfm-sandbox-admin"


def operations() -> dict[str, Op]:
    found: dict[str, Op] = {}
    package = sys.modules[__package__ or ""]
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("admin_"):
            module = importlib.import_module(f"{__package__}.{info.name}")
            for name, fn in getattr(module, "OPS", {}).items():
                if name in found:
                    raise RuntimeError(f"admin operation {name!r} defined twice")
                found[name] = fn
    return found


def install(folder: Path) -> list[str]:
    """Write the admin command into a sandbox; returns the target's `admin.command`."""
    script = folder / SCRIPT
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "from pathlib import Path\n"
        "from kfm_runbooks.sandbox.services.admin import main\n"
        "# this script lives in <sandbox>/live/bin/\n"
        "sys.exit(main(Path(sys.argv[0]).resolve().parent.parent.parent, sys.argv[1:]))\n"
    )
    script.chmod(0o755)
    return [SCRIPT.as_posix()]


def main(folder: Path, argv: list[str]) -> int:
    ops = operations()
    if len(argv) != 1 or argv[0] not in ops:
        names = ", ".join(sorted(ops))
        print(f"usage: kfm-sandbox-admin OP < args.json  (OP: {names})", file=sys.stderr)
        return 2
    try:
        args = json.loads(sys.stdin.read() or "{}")
    except ValueError:
        print("kfm-sandbox-admin: stdin is not JSON: pass a JSON object", file=sys.stderr)
        return 2
    if not isinstance(args, dict):
        print("kfm-sandbox-admin: the arguments must be a JSON object", file=sys.stderr)
        return 2
    try:
        result = ops[argv[0]](folder, args)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"kfm-sandbox-admin {argv[0]}: {exc}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout, sort_keys=True)
    return 0
