"""`kfm-runbook report`: one self-contained HTML page of an incident.

Header (id, severity, status, roles, milestones and durations), integrity (verify result,
ledger head, open flags), timeline from the ledger, runbook runs with outcomes, checks
and findings, the evidence table with sha256s, and every executed notebook rendered with
nbconvert (plots embedded as data URIs). No script, no external resource: notebook HTML
is sanitised with an allow-list and the page carries a Content-Security-Policy
(html_safe.py), so it opens offline, from a bundle, years later, and runs nothing a
notebook output smuggled in. Written to 90_postmortem/report-<UTC>.html (never
overwritten) and recorded in the ledger.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from . import html_safe, manifest, redact
from ._fs import sha256_bytes
from ._time import utc_now
from .evidence import publish_locked
from .history import DETAIL_KINDS, History, describe
from .layout import TIMELINE, Workspace, default_actor, timeline_line
from .recovery import open_for_update
from .verify import verify_locked

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;
margin-top:2rem}table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:.85em}.passed,.PASS,.ok{color:#1b5e20;font-weight:600}
.failed,.FAIL,.errored,.timeout,.kernel-died,.bad{color:#b71c1c;font-weight:600}
.hold,.HOLD,.unverified{color:#e65100;font-weight:600}.muted{color:#666}
details{border:1px solid #ddd;border-radius:4px;margin:.5rem 0;padding:.3rem .6rem}
summary{cursor:pointer;font-weight:600}.nb img{max-width:100%}
.nb pre{background:#f7f7f7;padding:.4rem;overflow-x:auto}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:1rem;background:#eee;
margin-right:.3rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _duration(start: Any, end: Any) -> str:
    if start is None or end is None:
        return "—"
    minutes = int((end - start).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _notebook_html(path: Path) -> str:
    """Render an executed notebook, made inert (html_safe: no script, nothing external)."""
    import nbformat
    from nbconvert import HTMLExporter

    from .scraps import MIME_PREFIX

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # scraps are data for machines; the report shows them as tables
        if cell.cell_type == "code":
            cell.outputs = [
                o
                for o in cell.outputs
                if not any(str(mime).startswith(MIME_PREFIX) for mime in o.get("data", {}))
            ]
    html_safe.inert_outputs(nb)
    exporter = HTMLExporter(template_name="basic")
    body, _ = exporter.from_notebook_node(nb)
    return html_safe.sanitize(str(body))


def render(workspace: Workspace) -> str:
    from pygments.formatters import HtmlFormatter

    record = workspace.load()
    history = History.read(workspace)
    check = verify_locked(workspace, None)
    stamps = record.timestamps
    generated = utc_now().isoformat(timespec="seconds")
    to_mitigate = _duration(stamps.declared, stamps.mitigated)
    to_resolve = _duration(stamps.declared, stamps.resolved)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{html_safe.CSP_META}",
        f"<title>{_e(record.id)} — {_e(record.title)}</title>",
        f"<style>{CSS}{HtmlFormatter().get_style_defs('.highlight')}</style></head><body>",
        f"<h1 id='incident-title'>{_e(record.id)} — {_e(record.title)}</h1>",
        f"<p><span class='badge' id='severity'>{_e(record.severity)}</span>"
        f"<span class='badge' id='status'>{_e(record.status)}</span>"
        f"<span class='muted'>generated {_e(generated)} UTC</span></p>",
        "<h2>Summary</h2><table>",
        f"<tr><th>Impact</th><td>{_e(record.impact or '—')}</td></tr>",
        f"<tr><th>Hypothesis</th><td>{_e(record.hypothesis or '—')}</td></tr>",
        f"<tr><th>Root cause</th><td id='root-cause'>{_e(record.root_cause or '—')}</td></tr>",
        "<tr><th>Roles</th><td>"
        + (", ".join(f"{_e(k)} {_e(v)}" for k, v in record.roles.model_dump().items() if v) or "—")
        + "</td></tr>",
    ]
    for name in ("declared", "detected", "identified", "mitigated", "monitoring", "resolved"):
        value = getattr(stamps, name)
        if value is not None:
            parts.append(f"<tr><th>{name}</th><td class='mono'>{_e(value.isoformat())}</td></tr>")
    parts += [
        f"<tr><th>Time to mitigate</th><td>{to_mitigate}</td></tr>",
        f"<tr><th>Time to resolve</th><td>{to_resolve}</td></tr>",
        "</table>",
        "<h2>Integrity</h2>",
        f"<p id='integrity' class='{'ok' if check.ok else 'bad'}'>"
        f"{'Evidence intact' if check.ok else 'Evidence NOT intact'}: {check.files_checked} files "
        f"re-hashed, {check.ledger_entries} ledger entries.</p>",
        f"<p>Ledger head <code id='ledger-head'>{_e(history.head)}</code></p>",
    ]
    parts += [f"<p class='bad'>✗ {_e(p)}</p>" for p in check.problems]
    parts += [
        f"<p class='hold'>⚠ integrity unproven ({_e(k)}): {_e(v)}</p>"
        for k, v in history.open_flags.items()
    ]
    parts += [
        "<h2>Timeline</h2><table><tr><th>time (UTC)</th><th>#</th><th>event</th><th>by</th></tr>"
    ]
    for entry in history.entries:
        if entry["kind"] in DETAIL_KINDS:
            continue
        parts.append(
            f"<tr><td class='mono'>{_e(entry['time'])}</td><td>{entry['seq']}</td>"
            f"<td>{_e(describe(entry))}</td><td>{_e(entry['actor'])}</td></tr>"
        )
    parts.append(
        "</table><h2>Runbook runs</h2><table id='runs'><tr><th>run</th><th>runbook</th>"
        "<th>outcome</th><th>checks</th><th>findings</th><th>connected to</th><th>code</th></tr>"
    )
    findings_by_run: dict[str, list[dict[str, Any]]] = {}
    for entry in history.of("finding"):
        findings_by_run.setdefault(str(entry["data"].get("run_id")), []).append(entry["data"])
    for entry in history.runs:
        data = entry["data"]
        checks = "<br>".join(
            f"<span class='{_e(c['status'])}'>{_e(c['status'])}</span> {_e(c['name'])}"
            for c in data.get("checks", [])
        )
        found = findings_by_run.get(str(data.get("run_id")), [])
        listing = "<br>".join(
            f"<code>{_e(f.get('code'))}</code> {_e(f.get('subject'))}" for f in found[:50]
        )
        more = f"<br>… {len(found) - 50} more" if len(found) > 50 else ""
        parts.append(
            f"<tr><td class='mono'>{_e(data.get('run_id'))}</td>"
            f"<td>{_e((data.get('runbook') or {}).get('id'))}</td>"
            f"<td class='{_e(data.get('outcome'))}'>{_e(data.get('outcome'))}</td>"
            f"<td>{checks or '—'}</td><td>{listing or '—'}{more}</td>"
            f"<td class='connections'>{_connections_cell(data.get('connections'))}</td>"
            f"<td class='code'>{_code_cell(data.get('code'))}</td></tr>"
        )
    parts.append(
        "</table><h2>Evidence</h2><table id='evidence'><tr><th>file "
        "(10_evidence/)</th><th>sha256</th></tr>"
    )
    for item in manifest.read(workspace.manifest):
        parts.append(
            f"<tr><td class='mono'>{_e(item.name)}</td><td class='mono'>{_e(item.sha256)}</td></tr>"
        )
    parts.append("</table><h2>Executed notebooks</h2>")
    for entry in history.runs:
        for output in entry["data"].get("outputs", []):
            if output["path"].endswith(".ipynb"):
                path = workspace.evidence / output["path"]
                body = _notebook_html(path) if path.is_file() else "<p class='bad'>missing</p>"
                parts.append(
                    f"<details class='nb'><summary>{_e(output['path'])} — "
                    f"{_e(entry['data'].get('outcome'))}</summary>{body}</details>"
                )
    parts.append("</body></html>\n")
    return "".join(parts)


def _connections_cell(summary: Any) -> str:
    """Where a run connected (its `connections` ledger entries, summed up at seal)."""
    if not isinstance(summary, dict) or not summary.get("count"):
        return "none"
    places = "<br>".join(f"<span class='mono'>{_e(p)}</span>" for p in summary.get("to") or [])
    return f"{_e(summary.get('count'))} connection(s)<br>{places}"


def _code_cell(code: Any) -> str:
    """The code a run's kernel ran (codeprov.py): version, Python, environment, modules."""
    if not isinstance(code, dict):
        return "<span class='hold'>not recorded</span>"
    found = code.get("modules")
    modules: dict[str, Any] = found if isinstance(found, dict) else {}
    listing = "<br>".join(
        f"<span class='mono'>{_e(rel)} {_e(str(digest)[:16])}…</span>"
        for rel, digest in sorted(modules.items())
    )
    return (
        f"{_e(code.get('package'))} {_e(code.get('version'))} · {_e(code.get('python'))}<br>"
        f"environment <span class='mono'>{_e(str(code.get('distributions_sha256'))[:16])}…</span>"
        f" ({_e(code.get('distributions'))} distributions)<details><summary>{len(modules)} "
        f"modules</summary>{listing}</details>"
    )


def write_report(
    incident_id: str, root: str | Path | None = None, actor: str | None = None
) -> Path:
    actor = actor or default_actor()
    workspace = open_for_update(incident_id, root, actor)
    with workspace.locked():
        text = redact.clean(render(workspace)).encode()
        path = workspace.postmortem / f"report-{utc_now():%Y%m%dT%H%M%S%fZ}.html"
        rel = path.relative_to(workspace.path).as_posix()
        publish_locked(
            workspace,
            [(rel, text)],
            "report",
            {"path": rel, "sha256": sha256_bytes(text)},
            actor,
            {TIMELINE: timeline_line(f"report written by {actor}: {path.name}")},
        )
    return path
