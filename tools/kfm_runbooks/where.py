"""`kfm-runbook where`: every location paths.py decides, and why it was chosen."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import paths
from .errors import RunbookError


def _entry(decide: Callable[[], paths.Location]) -> dict[str, Any]:
    try:
        return decide().as_dict()
    except RunbookError as exc:
        return {"path": None, "reason": f"error: {exc.message}"}


def _installed_kernel() -> dict[str, Any]:
    from .kernel import KERNEL_NAME, spec_info

    try:
        info = spec_info(KERNEL_NAME)
    except RunbookError as exc:
        return {"path": None, "reason": f"error: {exc.message}"}
    return {
        "path": info["resource_dir"],
        "reason": f"installed kernelspec {KERNEL_NAME}, runs {info['argv'][0]}",
    }


def report(root: str | Path | None = None) -> dict[str, Any]:
    """{name: {path, reason}} (the library: a list, top first); path None on an error."""
    from . import __version__
    from .kernel import KERNEL_NAME

    try:
        library: list[dict[str, Any]] = [loc.as_dict() for loc in paths.library_stack()]
    except RunbookError as exc:
        library = [{"path": None, "reason": f"error: {exc.message}"}]
    source = paths.checkout()
    return {
        "installation": {
            "path": str(paths.package_dir()),
            "reason": f"kfm-runbooks {__version__} for {sys.executable}"
            + (f", development checkout {source}" if source else ""),
        },
        "library": library,
        "incident_root": _entry(lambda: paths.incident_root(root)),
        "sandbox": _entry(paths.sandbox_dir),
        "repository": _entry(paths.repository),
        "kernelspec": _entry(
            lambda: paths.Location(
                paths.kernelspec_source(KERNEL_NAME), "packaged kernelspec (`kernel install`)"
            )
        ),
        "kernel": _installed_kernel(),
    }
