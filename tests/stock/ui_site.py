"""Stock UI pieces for the ui runbooks, independent of the sandbox.

Static files served by Python's own `http.server` (a separate, unmodified process on
loopback, started and always stopped by the fixture), shaped like a KFM deployment with
*other* routes than the sandbox's (the target maps them with `ui.routes`):

    /pages/clean.html          accessible, with the viewer's five controls
    /pages/plain.html          accessible, none of the viewer's controls
    /pages/broken.html         the five controls exist, but images have no alt text and
                               icon buttons no name (axe: image-alt, button-name: FAIL)
    /<system>/api/layers.json, layers/<id>.json, tiles/<id>/0/0/0.pbf, times/<id>.json,
    /<system>/api/stories/<id>.json, catalog.json

Systems (one folder each): `good` serves exactly its reference; `tiles-missing` lacks
the tiles of one layer; `desync` serves other time steps than the registry declares;
`broken-story` has a node that points at a layer nobody publishes. The reference files a
target names (`ui.layer_registry`, `ui.stories`, `ui.citations`) are written beside them
under `reference/` (not served).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kfm_runbooks._proc import die_with_parent

MONTHS = [f"2025-{m:02d}-01T00:00:00Z" for m in range(1, 5)]
ROUTES = {
    "layers": "/api/layers.json",
    "layer": "/api/layers/{id}.json",
    "tile": "/api/tiles/{id}/0/0/0.pbf",
    "times": "/api/times/{id}.json",
    "story": "/api/stories/{id}.json",
    "catalog": "/api/catalog.json",
}
LAYERS = [
    {"id": "soils", "title": "Soil survey", "sensitivity": "public", "time": None},
    {
        "id": "snow-cover",
        "title": "Snow cover (monthly)",
        "sensitivity": "public",
        "time": {"start": MONTHS[0], "end": MONTHS[-1], "step": "P1M", "values": MONTHS},
    },
    {"id": "roads", "title": "Roads", "sensitivity": "public", "time": None},
]
STORIES = [
    {
        "id": "winter-2025",
        "title": "A winter on the plains",
        "nodes": [
            {
                "id": "first-snow",
                "layer": "snow-cover",
                "time": MONTHS[0],
                "text": "January: the first snow.",
                "citations": ["cat-snow-cover"],
            },
            {
                "id": "roads-closed",
                "layer": "roads",
                "time": None,
                "text": "February: roads closed by drifts.",
                "citations": ["doc-road-report"],
            },
        ],
    }
]
CATALOG = {"items": [{"id": "cat-snow-cover"}, {"id": "cat-soils"}]}
CITATIONS = {"citations": [{"id": "doc-road-report", "title": "County road report"}]}
CONTROLS = [
    {"role": "combobox", "name": "Layer", "selector": "#layer"},
    {"role": "slider", "name": "Time", "selector": "#time"},
    {"role": "button", "name": "Play timeline", "selector": "#play"},
    {"role": "button", "name": "Open story", "selector": "#open-story"},
    {"role": "button", "name": "Ask Focus Mode", "selector": "#ask"},
]
SYSTEMS = ("good", "tiles-missing", "desync", "broken-story")

_HEAD = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>\n'
)
CLEAN = (
    _HEAD.format(title="Map viewer")
    + """<body data-release="r7"><header><h1>Map viewer</h1></header><main>
<nav aria-label="Map controls">
<label for="layer">Layer</label> <select id="layer"><option>Soil survey</option></select>
<label for="time">Time</label> <input id="time" type="range" min="0" max="3" value="0">
<button type="button" id="play">Play timeline</button>
<button type="button" id="open-story">Open story</button>
<button type="button" id="ask">Ask Focus Mode</button>
</nav>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="Legend: soil classes"
  width="8" height="8">
<p>Pick a layer and a time.</p>
</main></body></html>
"""
)
PLAIN = (
    _HEAD.format(title="About the map")
    + """<body><main><h1>About the map</h1>
<p>This site shows maps of the plains. <a href="clean.html">Open the viewer</a>.</p>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="Project logo" width="8" height="8">
</main></body></html>
"""
)
# The five controls are there, named and focusable; but the page's images have no alt text
# and its icon-only buttons have no accessible name: a screen reader cannot use them.
BROKEN = (
    _HEAD.format(title="Map viewer")
    + """<body data-release="r8"><header><h1>Map viewer</h1></header><main>
<nav aria-label="Map controls">
<label for="layer">Layer</label> <select id="layer"><option>Soil survey</option></select>
<label for="time">Time</label> <input id="time" type="range" min="0" max="3" value="0">
<button type="button" id="play">Play timeline</button>
<button type="button" id="open-story">Open story</button>
<button type="button" id="ask">Ask Focus Mode</button>
<button type="button" id="zoom-in"><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="
  width="8" height="8"></button>
<button type="button" id="zoom-out"></button>
</nav>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" width="8" height="8">
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" width="8" height="8">
</main></body></html>
"""
)


def _dump(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")


def _system(root: Path, name: str) -> None:
    api = root / "www" / name / "api"
    layers = [dict(layer) for layer in LAYERS]
    stories = json.loads(json.dumps(STORIES))
    if name == "broken-story":
        stories[0]["nodes"][1]["layer"] = "highways"  # no such layer is published
    _dump(api / "layers.json", {"layers": layers})
    for layer in layers:
        _dump(api / "layers" / f"{layer['id']}.json", layer)
        if not (name == "tiles-missing" and layer["id"] == "roads"):
            tile = api / "tiles" / layer["id"] / "0" / "0" / "0.pbf"
            tile.parent.mkdir(parents=True, exist_ok=True)
            tile.write_bytes(b"\x1a\x02" + layer["id"].encode())
        if layer["time"]:
            values = list(layer["time"]["values"])
            if name == "desync":  # one month lost, one the registry never declared
                values = [values[0], values[2], values[3], "2025-06-01T00:00:00Z"]
            _dump(api / "times" / f"{layer['id']}.json", {"layer": layer["id"], "times": values})
    for story in stories:
        _dump(api / "stories" / f"{story['id']}.json", story)
    _dump(api / "catalog.json", CATALOG)


def build(root: Path) -> Path:
    """Write the stock site under `root` (www/ is served; reference/ is not)."""
    pages = root / "www" / "pages"
    pages.mkdir(parents=True)
    (pages / "clean.html").write_text(CLEAN)
    (pages / "plain.html").write_text(PLAIN)
    (pages / "broken.html").write_text(BROKEN)
    for name in SYSTEMS:
        _system(root, name)
    ref = root / "reference"
    (ref).mkdir()
    (ref / "layer_registry.yaml").write_text(yaml.safe_dump({"layers": LAYERS}, sort_keys=False))
    _dump(ref / "stories.json", {"stories": STORIES})
    _dump(ref / "citations.json", CITATIONS)
    return root


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Site:
    root: Path
    url: str  # http://127.0.0.1:PORT

    def target(self, name: str, **sections: Any) -> Path:
        """Write a target file (only contract keys) into the site folder; returns its path."""
        body = {"name": f"stock-ui-{name}", "kind": "live", **sections}
        path = self.root / f"{name}.target.yaml"
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return path

    def ui(self, system: str = "good", page: str = "clean.html", **extra: Any) -> dict[str, Any]:
        """A `ui` section for one of the systems (references named unless overridden)."""
        section: dict[str, Any] = {
            "url": f"{self.url}/pages/{page}",
            "layer_registry": "reference/layer_registry.yaml",
            "stories": "reference/stories.json",
            "citations": "reference/citations.json",
            "routes": ROUTES,
        }
        section.update(extra)
        return {k: v for k, v in section.items() if v is not None}

    def api(self, system: str = "good") -> dict[str, Any]:
        return {"url": f"{self.url}/{system}"}


@contextmanager
def serve(root: Path) -> Iterator[Site]:
    """`python -m http.server` on loopback over root/www; always stopped."""
    build(root)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root / "www",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # a killed test run leaves no server behind
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/pages/plain.html", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"http.server did not answer at {url}") from None
                time.sleep(0.05)
        yield Site(root, url)
    finally:
        process.terminate()
        process.wait(timeout=10)
