"""The sandbox map viewer page (/ui/): layer picker, timeline, story and Focus Mode controls.

In releases v1 and v2 every control is a real, labelled, keyboard-focusable form element.
Release v3 (deployed by the `inaccessible-control` fault) renders the critical controls as
bare <div>s with click handlers: no role, no accessible name, not reachable with Tab.
"""

from __future__ import annotations

import html
import json
from typing import Any

BROKEN_RELEASES = frozenset({"v3"})


def render(registry: list[dict[str, Any]], release: str) -> str:
    broken = release in BROKEN_RELEASES
    layers = [layer for layer in registry if layer["sensitivity"] == "public"]
    options = "".join(
        f'<option value="{html.escape(layer["id"])}">{html.escape(layer["title"])}</option>'
        for layer in layers
    )
    if broken:
        controls = (
            '<div class="btn" id="play" onclick="play()">▶</div>'
            '<div class="btn" id="open-story" onclick="openStory()">📖</div>'
            '<div class="btn" id="ask" onclick="ask()">?</div>'
        )
    else:
        controls = (
            '<button type="button" id="play" onclick="play()" aria-label="Play timeline">▶'
            "</button>"
            '<button type="button" id="open-story" onclick="openStory()">Open story</button>'
            '<button type="button" id="ask" onclick="ask()">Ask Focus Mode</button>'
        )
    release = html.escape(release)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>KFM map viewer (sandbox)</title>
<style>body{{font-family:sans-serif;margin:1rem}}.btn{{display:inline-block;padding:.3rem;
border:1px solid #999;cursor:pointer}}#map{{height:200px;background:#dfe8d8;margin:.5rem 0}}
</style></head>
<body data-release="{release}">
<header><h1>KFM map viewer</h1></header>
<main>
<nav aria-label="Map controls">
<label for="layer">Layer</label> <select id="layer">{options}</select>
<label for="time">Time</label> <input id="time" type="range" min="0" max="5" value="0">
{controls}
<label for="question">Question</label> <input id="question" type="text">
</nav>
<div id="map" role="img" aria-label="Map of the selected layer"></div>
<p id="status" aria-live="polite"></p>
</main>
<script>
const layers = {json.dumps([layer["id"] for layer in layers])};
function play() {{ document.getElementById('status').textContent = 'Playing timeline'; }}
function openStory() {{ document.getElementById('status').textContent = 'Story opened'; }}
function ask() {{ document.getElementById('status').textContent = 'Asking Focus Mode'; }}
document.getElementById('status').textContent = layers.length + ' layers available';
</script>
</body></html>
"""
