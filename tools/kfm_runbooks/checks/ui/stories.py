"""Story Node render failures: a published story node that cannot be shown as written.

The stories to check are KFM's story definitions the target names (`ui.stories`), each
as the API serves it (`GET /api/v1/stories/<id>`). Every node of a served story must
reference a layer the API publishes that loads (descriptor + tile), pin a time that layer
serves (if it pins one), cite sources that resolve to catalog items
(`GET /api/v1/catalog/items`) or to documents of `ui.citations`, and carry plain,
non-empty text. The nodes are then rendered as HTML (ui_story_html) and the page is
parsed back and checked. Every intended story and node must be served. Codes:

- UI_STORY_LAYER_MISSING, UI_STORY_LAYER_NOT_LOADABLE, UI_STORY_TIME_NOT_SERVED,
  UI_STORY_CITATION_MISSING, UI_STORY_CITATION_UNRESOLVED, UI_STORY_TEXT_EMPTY,
  UI_STORY_TEXT_MARKUP, UI_STORY_NODE_INVALID: the node's causes;
- UI_STORY_HTML_INVALID: the rendered page or a node's section does not hold up;
- UI_STORY_NOT_SERVED: the API answers the story with an error (not 404);
- UI_STORY_UNPUBLISHED (404) / UI_STORY_NODE_UNPUBLISHED: intended but not served;
- UI_REFERENCE_MISSING / UI_REFERENCE_UNREADABLE, UI_SERVICE_UNREACHABLE,
  UI_STORY_CITATION_UNVERIFIED (HOLD).

Containment unpublishes a broken node (or the story, when no node of it renders);
recovery restores a node's layer from the intended definition and re-publishes it at its
intended place, only once the restored node passes every check. Each goes through the
admin interface the target names (ops `ui.withdraw_story_node`, `ui.withdraw_story`,
`ui.set_story_node_layer`, `ui.publish_story_node`, `ui.publish_story`), else it is a
manual action. All reversible.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from ...target import Target
from .. import BLOCKING, HOLD, Finding, undoable
from .base import UiSystem, intended_position, valid_id
from .story_html import NodeView, check_html, render_story
from .timeline import label

MARKUP = re.compile(r"<[A-Za-z!/?]")
CAUSE_CODES = frozenset(
    {
        "UI_STORY_NODE_INVALID",
        "UI_STORY_LAYER_MISSING",
        "UI_STORY_LAYER_NOT_LOADABLE",
        "UI_STORY_TIME_NOT_SERVED",
        "UI_STORY_CITATION_MISSING",
        "UI_STORY_CITATION_UNRESOLVED",
        "UI_STORY_TEXT_EMPTY",
        "UI_STORY_TEXT_MARKUP",
        "UI_STORY_HTML_INVALID",
    }
)
PUBLICATION_CODES = frozenset(
    {"UI_STORY_NOT_SERVED", "UI_STORY_UNPUBLISHED", "UI_STORY_NODE_UNPUBLISHED"}
)
CHECKS = ("layer", "loads", "time", "citations", "text / html")
CHECK_CODES = {
    "layer": {"UI_STORY_LAYER_MISSING", "UI_STORY_NODE_INVALID"},
    "loads": {"UI_STORY_LAYER_NOT_LOADABLE"},
    "time": {"UI_STORY_TIME_NOT_SERVED"},
    "citations": {"UI_STORY_CITATION_MISSING", "UI_STORY_CITATION_UNRESOLVED"},
    "text / html": {"UI_STORY_TEXT_EMPTY", "UI_STORY_TEXT_MARKUP", "UI_STORY_HTML_INVALID"},
}


@dataclass
class Context:
    """What node checks consult, probed once per run (layers, times, catalog)."""

    system: UiSystem
    layers: dict[str, dict[str, Any]]
    catalog: set[str] | None  # None: the catalog did not answer
    corpus: set[str]
    reachable: bool = True
    loads: dict[str, str | None] = field(default_factory=dict)  # layer -> None | why not
    times: dict[str, list[Any] | None] = field(default_factory=dict)

    @classmethod
    def load(cls, system: UiSystem) -> tuple[Context, list[Finding]]:
        registry, problems = system.published()
        corpus, _ = system.known_citations()
        probe = system.get(system.route("catalog"))
        body = probe.json() if probe.ok else None
        items = body.get("items") if isinstance(body, dict) else None
        catalog = (
            {str(i.get("id")) for i in items if isinstance(i, dict)}
            if isinstance(items, list)
            else None
        )
        context = cls(
            system,
            {x["id"]: x for x in registry or []},
            catalog,
            corpus or set(),
            reachable=probe.status is not None and registry is not None,
        )
        return context, problems

    def why_not_loadable(self, layer_id: str) -> str | None:
        if layer_id not in self.loads:
            descriptor, tile = self.system.probe_layer(self.layers[layer_id])
            if descriptor.status is None or tile.status is None:
                self.reachable = False  # unknown, not broken: the scan reports it (HOLD)
                self.loads[layer_id] = None
                return None
            bad = [p for p in (descriptor, tile) if not p.ok]
            self.loads[layer_id] = (
                None
                if not bad
                else "; ".join(
                    f"{p.path.rsplit('/api/v1/layers/', 1)[-1]}: {p.describe()}" for p in bad
                )
            )
        return self.loads[layer_id]

    def served_times(self, layer_id: str) -> list[Any] | None:
        if layer_id not in self.times:
            probe, times = self.system.served_times(self.layers[layer_id])
            self.reachable = self.reachable and probe.status is not None
            self.times[layer_id] = times
        return self.times[layer_id]


def node_problems(node: Any, context: Context, subject: str) -> list[Finding]:
    """Every reason this node cannot render as written (empty: it can)."""
    if not isinstance(node, dict) or not valid_id(node.get("id")):
        return [Finding("UI_STORY_NODE_INVALID", subject, "/", BLOCKING, "no valid node id")]
    out = []
    layer_id = node.get("layer")
    if not isinstance(layer_id, str) or layer_id not in context.layers:
        out.append(
            Finding(
                "UI_STORY_LAYER_MISSING",
                subject,
                "/layer",
                BLOCKING,
                f"layer {str(layer_id)[:60]!r} is not in the published registry",
            )
        )
    else:
        reason = context.why_not_loadable(layer_id)
        if reason is not None:
            out.append(
                Finding(
                    "UI_STORY_LAYER_NOT_LOADABLE",
                    subject,
                    "/layer",
                    BLOCKING,
                    f"{layer_id}: {reason}",
                )
            )
        when = node.get("time")
        if when is not None:
            served = context.served_times(layer_id) if context.layers[layer_id].get("time") else []
            if served is not None and when not in served:
                out.append(
                    Finding(
                        "UI_STORY_TIME_NOT_SERVED",
                        subject,
                        "/time",
                        BLOCKING,
                        f"{label(when)} is not served by {layer_id}",
                    )
                )
    out += _citation_problems(node.get("citations"), context, subject)
    text = node.get("text")
    if not isinstance(text, str) or not text.strip():
        out.append(Finding("UI_STORY_TEXT_EMPTY", subject, "/text", BLOCKING, "no text"))
    elif MARKUP.search(text):
        out.append(
            Finding(
                "UI_STORY_TEXT_MARKUP",
                subject,
                "/text",
                BLOCKING,
                "raw markup in the text (shown literally, or executed)",
            )
        )
    return out


def _citation_problems(citations: Any, context: Context, subject: str) -> list[Finding]:
    if not isinstance(citations, list) or not citations:
        return [
            Finding("UI_STORY_CITATION_MISSING", subject, "/citations", BLOCKING, "no citation")
        ]
    out = []
    for index, cited in enumerate(citations):
        known = cited in context.corpus or (
            context.catalog is not None and cited in context.catalog
        )
        if known:
            continue
        if context.catalog is None:  # unknown, not wrong: the catalog did not answer
            out.append(
                Finding(
                    "UI_STORY_CITATION_UNVERIFIED",
                    subject,
                    f"/citations/{index}",
                    HOLD,
                    "the catalog did not answer",
                )
            )
        else:
            out.append(
                Finding(
                    "UI_STORY_CITATION_UNRESOLVED",
                    subject,
                    f"/citations/{index}",
                    BLOCKING,
                    f"{str(cited)[:60]!r} is no catalog item nor a document of ui.citations",
                )
            )
    return out


@dataclass
class NodeReport:
    story: str
    node: str
    index: int
    layer: str
    time: str | None
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not any(f.severity == BLOCKING for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": f"{self.story}/{self.node}",
            "layer": self.layer,
            "time": label(self.time) if self.time is not None else None,
            "render": "OK" if self.ok else "FAILED",
            "codes": sorted({f.code for f in self.findings}),
        }

    def cells(self) -> list[bool | None]:
        """One value per CHECKS entry (None: not applicable, the layer is not published)."""
        codes = {f.code for f in self.findings}
        missing = "UI_STORY_LAYER_MISSING" in codes
        return [
            None if missing and name in ("loads", "time") else not (codes & CHECK_CODES[name])
            for name in CHECKS
        ]


@dataclass
class StoryScan:
    nodes: list[NodeReport]
    findings: list[Finding]
    pages: dict[str, str]  # story id -> rendered HTML
    published: list[dict[str, Any]]
    intended: list[dict[str, Any]]
    context: Context
    referenced: bool = True  # the target names its stories (ui.stories)

    @property
    def reachable(self) -> bool:
        return self.context.reachable

    def with_codes(self, codes: frozenset[str]) -> list[Finding]:
        return [f for f in self.findings if f.code in codes]

    def containment(self) -> list[tuple[str, str | None]]:
        """(story, node) to unpublish; node None: the whole story (no node of it renders)."""
        out: list[tuple[str, str | None]] = []
        for story in self.published:
            reports = [r for r in self.nodes if r.story == story["id"]]
            broken = [r for r in reports if not r.ok]
            if broken and len(broken) == len(reports):
                out.append((story["id"], None))
            else:
                out += [(story["id"], r.node) for r in broken]
        return out


def _render(
    story: dict[str, Any], reports: list[NodeReport], nodes: list[Any], context: Context
) -> tuple[str, list[Finding]]:
    views = []
    for report, node in zip(reports, nodes, strict=True):
        layer = context.layers.get(report.layer, {})
        blocking = [f.message or f.code for f in report.findings if f.severity == BLOCKING]
        views.append(
            NodeView(
                report.node,
                str(layer.get("title", report.layer)),
                report.time,
                str(node.get("text", "")) if isinstance(node, dict) else "",
                [str(c) for c in node.get("citations") or []] if isinstance(node, dict) else [],
                error=("cannot render: " + "; ".join(blocking)) if blocking else None,
            )
        )
    page = render_story(story["id"], str(story.get("title", story["id"])), views)
    page_problems, per_node = check_html(page, views)
    found = [Finding("UI_STORY_HTML_INVALID", story["id"], "/", BLOCKING, p) for p in page_problems]
    for report in reports:
        own = [p for p in per_node.get(report.node, []) if not p.startswith("rendered as")]
        for problem in own:
            extra = Finding(
                "UI_STORY_HTML_INVALID", f"{report.story}/{report.node}", "/text", BLOCKING, problem
            )
            report.findings.append(extra)
            found.append(extra)
    return page, found


def scan(system: UiSystem) -> StoryScan:
    system.forget()
    intended, answers, findings = system.served_stories()
    context, more = Context.load(system)
    findings = findings + more
    reports: list[NodeReport] = []
    pages: dict[str, str] = {}
    published: list[dict[str, Any]] = []
    for story in intended or []:
        answer = answers[story["id"]]
        body = answer.json() if answer.ok else None
        if answer.status is None:
            context.reachable = False
            continue
        if answer.status == 404:
            findings.append(
                Finding(
                    "UI_STORY_UNPUBLISHED",
                    story["id"],
                    "/stories",
                    BLOCKING,
                    "intended (ui.stories) but the API does not serve it (HTTP 404)",
                )
            )
            continue
        if not answer.ok or not isinstance(body, dict):
            findings.append(
                Finding("UI_STORY_NOT_SERVED", story["id"], "/", BLOCKING, answer.describe())
            )
            continue
        served = {**body, "id": story["id"]}
        published.append(served)
        raw = served.get("nodes")
        nodes: list[Any] = raw if isinstance(raw, list) else []
        own = []
        for index, node in enumerate(nodes):
            name = str(node.get("id")) if isinstance(node, dict) else f"nodes[{index}]"
            subject = f"{story['id']}/{name}"
            found = node_problems(node, context, subject)
            own.append(
                NodeReport(
                    story["id"],
                    name,
                    index,
                    str(node.get("layer")) if isinstance(node, dict) else "-",
                    node.get("time") if isinstance(node, dict) else None,
                    found,
                )
            )
            findings += found
        pages[story["id"]], rendered = _render(served, own, nodes, context)
        findings += rendered
        reports += own
    findings += _completeness(published, intended or [])
    if not context.reachable:
        findings.append(
            Finding(
                "UI_SERVICE_UNREACHABLE",
                "api",
                "/",
                HOLD,
                f"the API did not answer ({system.why_unreachable()}): "
                "story nodes cannot be verified",
            )
        )
    return StoryScan(
        reports,
        sorted(set(findings)),
        pages,
        published,
        intended or [],
        context,
        intended is not None,
    )


def _node_ids(story: dict[str, Any]) -> list[str]:
    nodes = story.get("nodes")
    return (
        [str(n.get("id")) for n in nodes if isinstance(n, dict)] if isinstance(nodes, list) else []
    )


def _served(system: UiSystem, story_id: str) -> dict[str, Any] | None:
    answer = system.get(system.route("story", story_id))
    body = answer.json() if answer.ok else None
    return body if isinstance(body, dict) else None


def story_published(system: UiSystem, story_id: str) -> bool:
    return _served(system, story_id) is not None


def node_published(system: UiSystem, story_id: str, node_id: str) -> bool:
    story = _served(system, story_id)
    return story is not None and node_id in _node_ids(story)


def _completeness(published: list[dict[str, Any]], intended: list[dict[str, Any]]) -> list[Finding]:
    out = []
    by_id = {s["id"]: s for s in published}
    for story in intended:
        if story["id"] not in by_id:
            out.append(
                Finding(
                    "UI_STORY_UNPUBLISHED",
                    story["id"],
                    "/stories",
                    BLOCKING,
                    "intended (ui.stories) but not served",
                )
            )
            continue
        have = set(_node_ids(by_id[story["id"]]))
        for node_id in _node_ids(story):
            if node_id not in have:
                out.append(
                    Finding(
                        "UI_STORY_NODE_UNPUBLISHED",
                        f"{story['id']}/{node_id}",
                        "/nodes",
                        BLOCKING,
                        "intended but not published",
                    )
                )
    return out


# --- recovery planning ------------------------------------------------------------------


@dataclass
class RecoveryStep:
    kind: str  # set-layer | republish-node | republish-story
    story: str
    node: str | None
    layer: str | None
    index: int
    entry: dict[str, Any]
    blocked: str | None = None

    @property
    def title(self) -> str:
        what = f"node {self.story}/{self.node}" if self.node else f"story {self.story}"
        verb = {
            "set-layer": f"Restore the layer of {what} to {self.layer}",
            "republish-node": f"Re-publish {what} with its intended layer {self.layer}",
            "republish-story": f"Re-publish {what} with its nodes' intended layers",
        }
        return verb[self.kind]


def _restored(node: dict[str, Any], intended: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(node), "layer": intended.get("layer")}


def _blocked(node: dict[str, Any], context: Context, subject: str) -> str | None:
    problems = [f for f in node_problems(node, context, subject) if f.severity == BLOCKING]
    return "; ".join(f.message or f.code for f in problems) or None


def plan_recovery(
    result: StoryScan, withdrawn: dict[str, dict[str, Any]] | None = None
) -> list[RecoveryStep]:
    """What recovery would do, from a fresh scan; `withdrawn` holds what containment took
    down in this run ("story" or "story/node" -> entry), else the intended entry is used."""
    withdrawn = withdrawn or {}
    steps = []
    published = {s["id"]: s for s in result.published}
    order = [s["id"] for s in result.published]
    for story in result.intended:
        sid = story["id"]
        intended_nodes = {
            str(n.get("id")): n for n in story.get("nodes") or [] if isinstance(n, dict)
        }
        if sid not in published:
            entry = copy.deepcopy(withdrawn.get(sid, story))
            entry["nodes"] = [
                _restored(n, intended_nodes.get(str(n.get("id")), n))
                for n in entry.get("nodes") or []
                if isinstance(n, dict)
            ]
            reasons = [r for n in entry["nodes"] if (r := _blocked(n, result.context, sid))]
            steps.append(
                RecoveryStep(
                    "republish-story",
                    sid,
                    None,
                    None,
                    intended_position(order, [s["id"] for s in result.intended], sid),
                    entry,
                    "; ".join(reasons) or None,
                )
            )
            continue
        current = {
            str(n.get("id")): n for n in published[sid].get("nodes") or [] if isinstance(n, dict)
        }
        reports = {r.node: r for r in result.nodes if r.story == sid}
        for node_id, want in intended_nodes.items():
            have = current.get(node_id)
            subject = f"{sid}/{node_id}"
            if have is not None:
                report = reports.get(node_id)
                layer_broken = report is not None and any(
                    f.code in ("UI_STORY_LAYER_MISSING", "UI_STORY_LAYER_NOT_LOADABLE")
                    for f in report.findings
                )
                if layer_broken and have.get("layer") != want.get("layer"):
                    candidate = _restored(have, want)
                    steps.append(
                        RecoveryStep(
                            "set-layer",
                            sid,
                            node_id,
                            want.get("layer"),
                            report.index if report else 0,
                            candidate,
                            _blocked(candidate, result.context, subject),
                        )
                    )
                continue
            candidate = _restored(withdrawn.get(subject, want), want)
            index = intended_position(list(current), list(intended_nodes), node_id)
            steps.append(
                RecoveryStep(
                    "republish-node",
                    sid,
                    node_id,
                    want.get("layer"),
                    index,
                    candidate,
                    _blocked(candidate, result.context, subject),
                )
            )
    return steps


# --- changes (only through run.action -> the target's admin interface) -----------------


def withdraw_node(system: UiSystem, story_id: str, node_id: str) -> dict[str, Any]:
    result = system.admin("ui.withdraw_story_node", {"story_id": story_id, "node_id": node_id})
    return {**result, "story": story_id, "node": node_id}


def republish_node(
    system: UiSystem, story_id: str, index: int, entry: dict[str, Any]
) -> dict[str, Any]:
    result = system.admin(
        "ui.publish_story_node", {"story_id": story_id, "index": int(index), "entry": entry}
    )
    return {**result, "story": story_id, "node": entry.get("id")}


def withdraw_story(system: UiSystem, story_id: str) -> dict[str, Any]:
    return {**system.admin("ui.withdraw_story", {"story_id": story_id}), "story": story_id}


def republish_story(system: UiSystem, index: int, entry: dict[str, Any]) -> dict[str, Any]:
    result = system.admin("ui.publish_story", {"index": int(index), "entry": entry})
    return {**result, "story": entry.get("id")}


def set_node_layer(system: UiSystem, story_id: str, node_id: str, layer: str) -> dict[str, Any]:
    result = system.admin(
        "ui.set_story_node_layer", {"story_id": story_id, "node_id": node_id, "layer": layer}
    )
    return {**result, "story": story_id, "node": node_id}


@undoable("ui_stories.republish_node")
def _undo_withdraw_node(
    target: Target, story_id: str, index: int, entry: dict[str, Any]
) -> dict[str, Any]:
    return republish_node(UiSystem.from_target(target), story_id, index, entry)


@undoable("ui_stories.withdraw_node")
def _undo_republish_node(target: Target, story_id: str, node_id: str) -> dict[str, Any]:
    return withdraw_node(UiSystem.from_target(target), story_id, node_id)


@undoable("ui_stories.republish_story")
def _undo_withdraw_story(target: Target, index: int, entry: dict[str, Any]) -> dict[str, Any]:
    return republish_story(UiSystem.from_target(target), index, entry)


@undoable("ui_stories.withdraw_story")
def _undo_republish_story(target: Target, story_id: str) -> dict[str, Any]:
    return withdraw_story(UiSystem.from_target(target), story_id)


@undoable("ui_stories.set_node_layer")
def _undo_set_layer(target: Target, story_id: str, node_id: str, layer: str) -> dict[str, Any]:
    return set_node_layer(UiSystem.from_target(target), story_id, node_id, layer)
