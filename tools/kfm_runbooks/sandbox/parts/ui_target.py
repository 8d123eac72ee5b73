"""Sandbox part: the target's `ui` section, and the reference files it names.

A real KFM deployment keeps its layer registry, its story definitions and its citable
documents in files of its own repository; the sandbox writes the same reference as three
files under live/reference/ (from the intended configuration, parts/live.py) and names
them in the target exactly as a production target would:

    ui:
      url: <the viewer page>            # rewritten to the loopback port at `sandbox up`
      release: v2                       # the release the page must say it is
      required_controls: [{role, name, selector}, ...]
      layer_registry: live/reference/layers.json
      stories: live/reference/stories.json
      citations: live/reference/citations.json
      read_roles: {public: public, restricted: analyst}

Runbooks never read live/config.json or live/state/: they compare what the API serves
with these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..services.target_render import API_HOST  # rewritten to the real port at `up`
from . import live

REFERENCE = Path("live") / "reference"
# The viewer's accessibility contract: the controls nobody may lose.
REQUIRED_CONTROLS = [
    {"role": "combobox", "name": "Layer", "selector": "#layer"},
    {"role": "slider", "name": "Time", "selector": "#time"},
    {"role": "button", "name": "Play timeline", "selector": "#play"},
    {"role": "button", "name": "Open story", "selector": "#open-story"},
    {"role": "button", "name": "Ask Focus Mode", "selector": "#ask"},
]


def _dump(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def section(folder: Path) -> dict[str, Any]:
    """Write the reference files into `folder` and return the target's `ui` section."""
    reference = live.config()
    _dump(folder / REFERENCE / "layers.json", {"layers": reference["layers"]})
    _dump(folder / REFERENCE / "stories.json", {"stories": reference["stories"]})
    _dump(
        folder / REFERENCE / "citations.json",
        {"citations": [{"id": d["id"], "title": d["title"]} for d in reference["focus"]["corpus"]]},
    )
    return {
        "url": f"{API_HOST}/ui/",
        "release": reference["ui"]["release"],
        "required_controls": REQUIRED_CONTROLS,
        "layer_registry": (REFERENCE / "layers.json").as_posix(),
        "stories": (REFERENCE / "stories.json").as_posix(),
        "citations": (REFERENCE / "citations.json").as_posix(),
        "read_roles": {"public": "public", "restricted": "analyst"},
    }


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    return {"ui": section(folder)}, []
