"""Keep operator commands fast: skip an optional import that costs over a second.

jsonschema (imported by nbformat) imports `rfc3987_syntax` when it is installed, only to
check the "iri" string formats; that package compiles a Lark grammar at import time
(~1.2 s here). JupyterLab's dependencies install it, so every process that imports
nbformat would pay for it; nbformat's notebook schema uses no IRI formats. Our CLI and
run worker hide the module, and jsonschema then simply leaves those formats unchecked.
Kernels and Jupyter servers are not affected.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType

SLOW_OPTIONAL = frozenset({"rfc3987_syntax"})


class _SkipSlowOptional(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname.split(".", 1)[0] in SLOW_OPTIONAL:
            raise ImportError(f"{fullname} skipped by kfm-runbooks (optional, slow to import)")
        return None


def skip_slow_optional_imports() -> None:
    if not any(isinstance(f, _SkipSlowOptional) for f in sys.meta_path):
        sys.meta_path.insert(0, _SkipSlowOptional())
