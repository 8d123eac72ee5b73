"""The sandbox's admin operations for the UI side (imported by admin.py: `OPS`).

The sandbox API serves layers, time steps, stories and the viewer release from
live/state/; these operations are how an operator changes them — the same role a real
deployment's admin CLI or endpoint plays. Each takes the sandbox folder and a JSON
object, returns a JSON object, and is idempotent; a wrong argument is a ValueError /
KeyError (the admin command turns it into one line on stderr and exit 2).

    ui.rollback_release {}                      -> {rolled_back, release, from, before}
    ui.restore_release {document, expect}       -> {restored, release}
    ui.withdraw_layer {layer_id}                -> {withdrawn, index, entry}
    ui.publish_layer {entry, index}             -> {republished, index}
    ui.restore_tile_source {layer_id}           -> {restored, sha256}
    ui.remove_tile_source {layer_id, sha256}    -> {removed}
    ui.set_time_index {layer_id, values}        -> {regenerated, previous, sha256}
    ui.restore_time_index {layer_id, previous, sha256} -> {restored}
    ui.withdraw_story {story_id}                -> {withdrawn, index, entry}
    ui.publish_story {index, entry}             -> {republished, index}
    ui.withdraw_story_node {story_id, node_id}  -> {withdrawn, index, entry}
    ui.publish_story_node {story_id, index, entry} -> {republished, index}
    ui.set_story_node_layer {story_id, node_id, layer} -> {changed, previous}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..._fs import replace_atomic

ID = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
# The sandbox's one tile-source convention (parts/live.py writes it for every layer).
TILE_SOURCE = {"format": "mvt", "zooms": [0, 14]}


def _state(folder: Path) -> Path:
    return folder / "live" / "state"


def _read(folder: Path, name: str) -> Any:
    return json.loads((_state(folder) / name).read_text())


def _write(folder: Path, name: str, value: Any) -> None:
    path = _state(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def _id(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise ValueError(f"{key} must be an id ([a-z0-9-]), not {str(value)[:60]!r}")
    return value


def _digest(value: Any) -> str:
    """Fingerprint persisted in undo arguments: json.dumps(sort_keys=True), never to change."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _index(args: dict[str, Any]) -> int:
    value = args.get("index", 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("index must be an integer")
    return value


# -- the viewer release ---------------------------------------------------------------------


def rollback_release(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    doc = _read(folder, "ui.json")
    if not isinstance(doc, dict) or not isinstance(doc.get("previous"), str):
        raise ValueError("the deployed release names no previous release to roll back to")
    current, previous = doc.get("release"), doc["previous"]
    if current == previous:
        return {"rolled_back": False, "release": current, "reason": "already on previous"}
    config = json.loads((folder / "live" / "config.json").read_text())
    lineage = config.get("ui") if isinstance(config.get("ui"), dict) else {}
    new: dict[str, Any] = {"release": previous, "rolled_back_from": current}
    if lineage.get("release") == previous and isinstance(lineage.get("previous"), str):
        new["previous"] = lineage["previous"]
    _write(folder, "ui.json", new)
    return {"rolled_back": True, "release": previous, "from": current, "before": doc}


def restore_release(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    document, expect = args.get("document"), args.get("expect")
    if not isinstance(document, dict) or not isinstance(document.get("release"), str):
        raise ValueError("document must be a release document with a release")
    current = _read(folder, "ui.json").get("release")
    if current == document["release"]:
        return {"restored": False, "release": current, "reason": "already deployed"}
    if current != expect:
        return {"restored": False, "release": current, "reason": "another release is deployed"}
    _write(folder, "ui.json", document)
    return {"restored": True, "release": document["release"]}


# -- the layer registry and tiles ----------------------------------------------------------


def _entries(folder: Path, name: str, key: str) -> tuple[dict[str, Any], list[Any]]:
    doc = _read(folder, name)
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        raise ValueError(f"state/{name} is not readable")
    return doc, doc[key]


def _withdraw(folder: Path, name: str, key: str, item_id: str) -> dict[str, Any]:
    doc, items = _entries(folder, name, key)
    index = next(
        (i for i, x in enumerate(items) if isinstance(x, dict) and x.get("id") == item_id), None
    )
    if index is None:
        return {"id": item_id, "withdrawn": False, "reason": "not published"}
    entry = items.pop(index)
    _write(folder, name, doc)
    return {"id": item_id, "withdrawn": True, "index": index, "entry": entry}


def _publish(folder: Path, name: str, key: str, args: dict[str, Any]) -> dict[str, Any]:
    entry = args.get("entry")
    if not isinstance(entry, dict):
        raise ValueError("entry must be an object")
    item_id = _id(entry, "id")
    doc, items = _entries(folder, name, key)
    if any(isinstance(x, dict) and x.get("id") == item_id for x in items):
        return {"id": item_id, "republished": False, "reason": "already published"}
    position = max(0, min(_index(args), len(items)))
    items.insert(position, entry)
    _write(folder, name, doc)
    return {"id": item_id, "republished": True, "index": position}


def withdraw_layer(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    return _withdraw(folder, "layers.json", "layers", _id(args, "layer_id"))


def publish_layer(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    entry = args.get("entry")
    if isinstance(entry, dict) and not isinstance(entry.get("sensitivity"), str):
        raise ValueError("a layer entry needs a sensitivity")
    return _publish(folder, "layers.json", "layers", args)


def _source_path(folder: Path, layer_id: str) -> Path:
    return _state(folder) / "tiles" / layer_id / "source.json"


def restore_tile_source(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    layer_id = _id(args, "layer_id")
    path = _source_path(folder, layer_id)
    if path.is_file():
        current = json.loads(path.read_text())
        return {"restored": False, "reason": "already present", "sha256": _digest(current)}
    source = {**TILE_SOURCE, "layer": layer_id}
    _write(folder, f"tiles/{layer_id}/source.json", source)
    return {"restored": True, "sha256": _digest(source)}


def remove_tile_source(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    layer_id = _id(args, "layer_id")
    path = _source_path(folder, layer_id)
    if not path.is_file():
        return {"removed": False, "reason": "no tile source"}
    if _digest(json.loads(path.read_text())) != args.get("sha256"):
        return {"removed": False, "reason": "changed since it was restored"}
    path.unlink()
    if not any(path.parent.iterdir()):
        path.parent.rmdir()
    return {"removed": True}


# -- time indexes ----------------------------------------------------------------------------


def set_time_index(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    layer_id = _id(args, "layer_id")
    values = args.get("values")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("values must be a list of ISO 8601 strings")
    name = f"times/{layer_id}.json"
    try:
        previous = _read(folder, name)
    except (OSError, ValueError):
        previous = None
    if isinstance(previous, dict) and previous.get("values") == values:
        return {"regenerated": False, "reason": "already in sync", "sha256": _digest(previous)}
    document = {**(previous if isinstance(previous, dict) else {}), "values": values}
    _write(folder, name, document)
    return {"regenerated": True, "previous": previous, "sha256": _digest(document)}


def restore_time_index(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    layer_id = _id(args, "layer_id")
    name = f"times/{layer_id}.json"
    try:
        current = _read(folder, name)
    except (OSError, ValueError):
        current = None
    if current is None or _digest(current) != args.get("sha256"):
        return {"restored": False, "reason": "changed since it was regenerated"}
    if args.get("previous") is None:
        (_state(folder) / name).unlink()
    else:
        _write(folder, name, args["previous"])
    return {"restored": True}


# -- stories -----------------------------------------------------------------------------------


def _story(doc: dict[str, Any], story_id: str) -> dict[str, Any]:
    for story in doc["stories"]:
        if isinstance(story, dict) and story.get("id") == story_id:
            if not isinstance(story.get("nodes"), list):
                story["nodes"] = []
            return story
    raise ValueError(f"story {story_id} is not published")


def withdraw_story(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    return _withdraw(folder, "stories.json", "stories", _id(args, "story_id"))


def publish_story(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    return _publish(folder, "stories.json", "stories", args)


def withdraw_story_node(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    story_id, node_id = _id(args, "story_id"), _id(args, "node_id")
    doc, _ = _entries(folder, "stories.json", "stories")
    nodes = _story(doc, story_id)["nodes"]
    index = next(
        (i for i, n in enumerate(nodes) if isinstance(n, dict) and n.get("id") == node_id), None
    )
    if index is None:
        return {"id": node_id, "withdrawn": False, "reason": "not published"}
    entry = nodes.pop(index)
    _write(folder, "stories.json", doc)
    return {"id": node_id, "withdrawn": True, "index": index, "entry": entry}


def publish_story_node(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    story_id = _id(args, "story_id")
    entry = args.get("entry")
    if not isinstance(entry, dict):
        raise ValueError("entry must be an object")
    node_id = _id(entry, "id")
    doc, _ = _entries(folder, "stories.json", "stories")
    nodes = _story(doc, story_id)["nodes"]
    if any(isinstance(n, dict) and n.get("id") == node_id for n in nodes):
        return {"id": node_id, "republished": False, "reason": "already published"}
    position = max(0, min(_index(args), len(nodes)))
    nodes.insert(position, entry)
    _write(folder, "stories.json", doc)
    return {"id": node_id, "republished": True, "index": position}


def set_story_node_layer(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    story_id, node_id, layer = _id(args, "story_id"), _id(args, "node_id"), _id(args, "layer")
    doc, _ = _entries(folder, "stories.json", "stories")
    node = next(
        (
            n
            for n in _story(doc, story_id)["nodes"]
            if isinstance(n, dict) and n.get("id") == node_id
        ),
        None,
    )
    if node is None:
        raise ValueError(f"node {story_id}/{node_id} is not published")
    previous = node.get("layer")
    if previous == layer:
        return {"changed": False, "layer": layer}
    node["layer"] = layer
    _write(folder, "stories.json", doc)
    return {"changed": True, "layer": layer, "previous": previous}


OPS: dict[str, Callable[[Path, dict[str, Any]], dict[str, Any]]] = {
    "ui.rollback_release": rollback_release,
    "ui.restore_release": restore_release,
    "ui.withdraw_layer": withdraw_layer,
    "ui.publish_layer": publish_layer,
    "ui.restore_tile_source": restore_tile_source,
    "ui.remove_tile_source": remove_tile_source,
    "ui.set_time_index": set_time_index,
    "ui.restore_time_index": restore_time_index,
    "ui.withdraw_story": withdraw_story,
    "ui.publish_story": publish_story,
    "ui.withdraw_story_node": withdraw_story_node,
    "ui.publish_story_node": publish_story_node,
    "ui.set_story_node_layer": set_story_node_layer,
}
