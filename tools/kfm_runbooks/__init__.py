"""kfm-runbooks: executable incident runbook notebooks with sealed, hash-chained evidence.

The library surface (everything the CLI does is callable from here)::

    from kfm_runbooks import create_incident, run_runbook, verify_workspace

Names resolve lazily, so `import kfm_runbooks.record` inside a kernel stays light.
`__version__` is the installed distribution's version: pyproject.toml is its one source.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

DISTRIBUTION = "kfm-runbooks"
_LAZY = {
    "create_incident": "workspace",
    "open_workspace": "workspace",
    "list_incidents": "workspace",
    "run_runbook": "execute",
    "RunResult": "seal",
    "verify_workspace": "verify",
    "create_sandbox": "sandbox",
    "RunbookError": "errors",
}
__all__ = ["__version__", *sorted(_LAZY)]


def _version() -> str:
    from .codeprov import package_version

    return package_version()


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kfm_runbooks' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
