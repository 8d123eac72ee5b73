"""The installed project kernel is pinned to this venv's interpreter and environment."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kfm_runbooks import paths
from kfm_runbooks.kernel import KERNEL_NAME, spec_info


def test_installed_spec_is_pinned() -> None:
    info = spec_info()
    interpreter = Path(info["argv"][0])
    assert interpreter.is_absolute() and interpreter.parent == Path(sys.executable).parent
    assert info["env"]["TZ"] == "UTC" and info["env"]["PYTHONHASHSEED"] == "0"
    assert Path(info["resource_dir"]).is_relative_to(Path(sys.prefix))


def test_repo_spec_is_portable() -> None:
    spec = json.loads((paths.kernelspec_source(KERNEL_NAME) / "kernel.json").read_text())
    assert spec["argv"][0] == "python"
