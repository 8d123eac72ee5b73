"""Story Nodes rendered as HTML, and the rendered HTML checked with a real parser.

`render_story` turns a published story into the HTML a viewer would show: one <section>
per node with its layer and time, the node text (always escaped) and one link per
citation; a node that cannot render shows an alert instead. `check_html` parses the
result (html.parser) and reports, per node, what a reader would not get: unbalanced
markup, active content (<script>, on* handlers, javascript: URLs), text that does not
survive the round trip, citations that did not become links, or the render alert.
Standard library only.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "wbr", "source"})
ACTIVE = frozenset({"script", "iframe", "object", "embed", "frame", "frameset"})


@dataclass
class NodeView:
    """What the renderer needs of one node (already checked by ui_stories)."""

    node_id: str
    layer_title: str
    time: str | None
    text: str
    citations: list[str]
    error: str | None = None  # why the node cannot render (None: it can)


def render_story(story_id: str, title: str, nodes: list[NodeView]) -> str:
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        "</head><body>",
        f'<article class="story" id="story-{html.escape(story_id)}">',
        f"<h1>{html.escape(title)}</h1>",
    ]
    for node in nodes:
        attrs = f'id="node-{html.escape(node.node_id)}"'
        if node.error is not None:
            parts.append(
                f'<section class="node render-error" {attrs}>'
                f'<p role="alert">{html.escape(node.error)}</p></section>'
            )
            continue
        when = f" · {html.escape(node.time[:10])}" if node.time else ""
        links = "".join(
            f'<li><a href="/api/v1/catalog/items#{html.escape(c, quote=True)}">'
            f"{html.escape(c)}</a></li>"
            for c in node.citations
        )
        parts.append(
            f'<section class="node" {attrs}><h2>{html.escape(node.layer_title)}{when}</h2>'
            f'<p class="text">{html.escape(node.text)}</p><ul class="citations">{links}</ul>'
            "</section>"
        )
    parts.append("</article></body></html>")
    return "\n".join(parts) + "\n"


@dataclass
class _Section:
    node_id: str
    error: bool
    text: list[str] = field(default_factory=list)
    links: int = 0
    alert: list[str] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.sections: list[_Section] = []
        self.current: _Section | None = None
        self.capture: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ACTIVE:
            self.problems.append(f"active content <{tag}>")
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"active attribute {name}")
        if tag == "section":
            node_id = str(values.get("id") or "").removeprefix("node-")
            self.current = _Section(node_id, "render-error" in str(values.get("class")))
            self.sections.append(self.current)
        elif self.current is not None and tag == "p":
            self.capture = "alert" if values.get("role") == "alert" else "text"
        elif self.current is not None and tag == "a" and values.get("href"):
            self.current.links += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"unbalanced </{tag}>")
            return
        self.stack.pop()
        if tag == "p":
            self.capture = None
        if tag == "section":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.current is not None and self.capture == "text":
            self.current.text.append(data)
        elif self.current is not None and self.capture == "alert":
            self.current.alert.append(data)


def check_html(page: str, nodes: list[NodeView]) -> tuple[list[str], dict[str, list[str]]]:
    """(page-level problems, {node id: problems}) of a rendered story page."""
    reader = _Reader()
    reader.feed(page)
    reader.close()
    page_problems = sorted(set(reader.problems))
    if reader.stack:
        page_problems.append(f"unclosed <{reader.stack[-1]}>")
    sections = {s.node_id: s for s in reader.sections}
    per_node: dict[str, list[str]] = {}
    for node in nodes:
        section = sections.get(node.node_id)
        problems: list[str] = []
        if section is None:
            problems.append("no rendered section")
        elif section.error:
            problems.append("rendered as an error: " + "".join(section.alert).strip())
        else:
            if "".join(section.text) != node.text:
                problems.append("text does not survive rendering")
            if section.links != len(node.citations):
                problems.append(f"{section.links} of {len(node.citations)} citation link(s)")
        per_node[node.node_id] = problems
    return page_problems, per_node
