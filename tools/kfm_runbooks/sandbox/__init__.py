"""The built-in sandbox: a small, deterministic KFM-like system with seeded faults.

`create(DIR)` writes the same bytes every time (fixed content, timestamps, order), one
part per domain, and a `target.yaml` that describes it. `--clean` builds the variant
without faults, where every verification passes. SANDBOX.md in the folder lists the
seeded faults and which runbook finds each.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .. import paths
from .._fs import create_new
from ..errors import InputError
from .services import target_render

SANDBOX_ENV = paths.SANDBOX_ENV

# A part is a module in `parts/` with `build(folder, clean)` that writes its files
# under the sandbox folder and returns {target section name: section} and the faults it
# seeded (one line each, naming the finding code and the runbook that finds it). Parts
# are built in module-name order, so the sandbox stays byte-for-byte deterministic.
Part = Callable[[Path, bool], tuple[dict[str, Any], list[str]]]


def builders() -> list[tuple[str, Part]]:
    """Every part's `build`, in module-name order (the modules of `sandbox/parts/`)."""
    from . import parts

    found = []
    for info in sorted(pkgutil.iter_modules(parts.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{parts.__name__}.{info.name}")
        if callable(getattr(module, "build", None)):
            found.append((info.name, module.build))
    return found


def default_sandbox_dir() -> Path:
    """$KFM_SANDBOX_DIR, else .kfm/sandbox in the project (paths.sandbox_dir)."""
    return paths.sandbox_dir().path


def create_sandbox(dest: str | Path, *, clean: bool = False, git: bool = False) -> Path:
    """Build the sandbox in `dest` (must not exist or be empty); returns target.yaml.
    With `git`, the sandbox is a git repository with a bare origin (git_variant.py)."""
    folder = Path(dest).expanduser().resolve()
    if folder.exists() and any(folder.iterdir()):
        raise InputError(
            f"{folder} is not empty: the sandbox is built into a new folder "
            "(remove it or choose another path)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    target: dict[str, Any] = {
        "name": "kfm-sandbox-clean" if clean else "kfm-sandbox",
        "kind": "sandbox",
        "variant": "clean" if clean else "faulty",
        "network": "deny",
        **({"git": True} if git else {}),
    }
    faults: list[str] = []
    for name, build in builders():
        sections, seeded = build(folder, clean)
        for section, config in sections.items():
            if section not in target:
                target[section] = config
                continue
            mine = target[section]
            shared = isinstance(mine, dict) and isinstance(config, dict) and set(mine) & set(config)
            if not isinstance(mine, dict) or not isinstance(config, dict) or shared:
                raise RuntimeError(f"sandbox part {name} redefines target section {section!r}")
            mine.update(config)  # parts may share a section, never a key
        faults.extend(seeded)
    header = (
        "# kfm-runbook target: the built-in sandbox (see SANDBOX.md).\n"
        "# Paths are relative to this file. `kfm-runbook sandbox up` fills in the URLs\n"
        "# (host sandbox-api.invalid until then) from live/target.template.yaml.\n"
    )
    text = (header + yaml.safe_dump(target, sort_keys=False)).encode()
    create_new(folder / target_render.TEMPLATE, text)
    create_new(folder / "target.yaml", text)
    notes = ["# KFM sandbox", "", f"Variant: {target['variant']}.", "", "## Seeded faults", ""]
    notes += [f"- {fault}" for fault in faults] or ["- none (clean variant)"]
    create_new(folder / "SANDBOX.md", ("\n".join(notes) + "\n").encode())
    if git:
        from .git_variant import make_repository

        make_repository(folder)
    return folder / "target.yaml"


def ensure_sandbox(folder: Path) -> Path:
    """The sandbox's target.yaml, building the faulty sandbox first if it is absent."""
    target = folder / "target.yaml"
    if not target.is_file():
        create_sandbox(folder)
    return target
