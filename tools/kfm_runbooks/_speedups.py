"""Keep runs fast: defer an optional import that costs seconds until it is really used.

jsonschema (imported by nbformat, and by the checks that validate KFM records) imports
`rfc3987_syntax` when it is installed, to check the "iri" / "iri-reference" string
formats; that package compiles a Lark grammar at import time (~1.2 s on a fast machine,
~3 s CPU on a busy 2-core one). JupyterLab's dependencies install it, so every process
that imports jsonschema would pay for it, and almost no schema uses those formats.

Skipping the module would make jsonschema leave "iri" unchecked: a silent pass on
something never verified. So it is *deferred*, not skipped: `rfc3987_syntax` is imported
as a small stand-in whose `is_valid_syntax` loads the real package on first call. The CLI,
the run worker and the project kernel (`python -m kfm_runbooks.kernel_launcher`) install
the hook before anything imports jsonschema.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

DEFERRED = "rfc3987_syntax"


class _Deferred(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers `import rfc3987_syntax` with a stand-in until the real one is needed."""

    def __init__(self) -> None:
        self.loading_real = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != DEFERRED or self.loading_real:
            return None
        if importlib.machinery.PathFinder.find_spec(DEFERRED) is None:
            return None  # not installed: jsonschema behaves as without it
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        def is_valid_syntax(rule: str, value: str) -> Any:
            return self.real().is_valid_syntax(rule, value)

        module.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
        module.__doc__ = "kfm-runbooks stand-in: the real rfc3987_syntax loads on first use"

    def real(self) -> ModuleType:
        """The real package (imported once, replacing the stand-in in sys.modules)."""
        current = sys.modules.get(DEFERRED)
        spec = getattr(current, "__spec__", None)
        if current is not None and spec is not None and spec.loader is not self:
            return current
        self.loading_real = True
        try:
            sys.modules.pop(DEFERRED, None)
            return importlib.import_module(DEFERRED)
        finally:
            self.loading_real = False


def defer_slow_optional_imports() -> None:
    """Install the hook (idempotent). Call before jsonschema is first imported."""
    if not any(isinstance(f, _Deferred) for f in sys.meta_path):
        sys.meta_path.insert(0, _Deferred())
