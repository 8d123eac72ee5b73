"""Accessibility regressions: the map viewer's critical controls, in a real browser.

The deployed /ui/ page is loaded in headless Chromium (Debian's /usr/bin/chromium, driven
by Playwright) and inspected through the browser's accessibility tree, not its markup:
every critical control must be found by its role and accessible name
(`get_by_role(role, name=...)`, exactly once) and must be reachable with the keyboard
(pressing Tab from the top of the page must focus it). The page may only reach loopback:
any other request is refused and reported. Codes:

- UI_A11Y_CONTROL_UNNAMED: no element with the control's role and name;
- UI_A11Y_CONTROL_AMBIGUOUS: more than one;
- UI_A11Y_CONTROL_NOT_FOCUSABLE: Tab never reaches it;
- UI_RELEASE_NOT_INTENDED: the deployed release (state/ui.json) is not the intended one
  (config.json `ui.release`); UI_RELEASE_MISMATCH: the page says another release;
- UI_A11Y_PAGE_UNAVAILABLE, UI_A11Y_BROWSER_UNAVAILABLE (HOLD): nothing could be checked;
- UI_A11Y_EXTERNAL_REQUEST_BLOCKED (info): the page tried to leave loopback.

Containment rolls the deployed release back to the previous one (state/ui.json); its undo
rolls forward to exactly the release document that was deployed. Playwright is imported
only inside `audit`, which runs in a worker thread (the sync API refuses a running
asyncio loop, which Jupyter kernels have).
"""

from __future__ import annotations

import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...target import Target
from .. import BLOCKING, HOLD, INFO, Finding, undoable
from .base import UiSystem

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
MAX_TABS = 40
A11Y_CODES = frozenset(
    {"UI_A11Y_CONTROL_UNNAMED", "UI_A11Y_CONTROL_AMBIGUOUS", "UI_A11Y_CONTROL_NOT_FOCUSABLE"}
)
RELEASE_CODES = frozenset({"UI_RELEASE_NOT_INTENDED", "UI_RELEASE_MISMATCH"})


@dataclass(frozen=True)
class Control:
    """A critical control: how assistive technology must find it, and where it lives."""

    key: str
    role: str
    name: str
    hint: str  # CSS selector of the element meant to be this control (for the report)


# The viewer's accessibility contract: the controls nobody may lose.
CRITICAL = (
    Control("layer-select", "combobox", "Layer", "#layer"),
    Control("time-slider", "slider", "Time", "#time"),
    Control("play", "button", "Play timeline", "#play"),
    Control("open-story", "button", "Open story", "#open-story"),
    Control("ask", "button", "Ask Focus Mode", "#ask"),
)


@dataclass
class ControlResult:
    key: str
    role: str
    name: str
    matches: int  # elements with this role and accessible name
    focusable: bool  # reached with Tab
    present_as: str  # what the hinted element is to the accessibility tree

    @property
    def ok(self) -> bool:
        return self.matches == 1 and self.focusable


@dataclass
class Audit:
    path: str
    release: str | None = None  # what the page says (body data-release)
    snapshot: str = ""  # ARIA snapshot of the page body
    tab_order: list[str] = field(default_factory=list)
    controls: list[ControlResult] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # refused non-loopback requests
    error: str | None = None
    error_code: str = "UI_A11Y_PAGE_UNAVAILABLE"
    screenshot: bytes = b""  # PNG of the page as loaded (evidence)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "screenshot"}


_DESCRIBE = """el => {
  const attrs = ['role', 'aria-label', 'tabindex'].filter(a => el.hasAttribute(a))
    .map(a => `${a}=${JSON.stringify(el.getAttribute(a))}`);
  return `<${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${attrs.length ? ' ' +
    attrs.join(' ') : ''}>`;
}"""
_FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  return [e.getAttribute('data-kfm-control') || '', e.getAttribute('data-kfm-hint') || ''];
}"""


def _first_line(snapshot: str) -> str:
    line = snapshot.strip().splitlines()[0] if snapshot.strip() else "(nothing)"
    return line.removeprefix("- ").rstrip(":")


def _inspect(page: Any, audit: Audit, controls: tuple[Control, ...]) -> None:
    from playwright.sync_api import Error as PlaywrightError

    audit.release = page.get_attribute("body", "data-release")
    audit.screenshot = page.screenshot(full_page=True)
    audit.snapshot = page.locator("body").aria_snapshot()
    results: dict[str, ControlResult] = {}
    for control in controls:
        found = page.get_by_role(control.role, name=control.name, exact=True)
        count = found.count()
        if count == 1:
            found.evaluate("(el, key) => el.setAttribute('data-kfm-control', key)", control.key)
        hint = page.locator(control.hint)
        present = "absent"
        if hint.count() == 1:
            hint.evaluate("(el, key) => el.setAttribute('data-kfm-hint', key)", control.key)
            present = f"{hint.evaluate(_DESCRIBE)} = {_first_line(hint.aria_snapshot())}"
        results[control.key] = ControlResult(
            control.key, control.role, control.name, count, False, present
        )
    first: Any = None
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        focused = page.evaluate(_FOCUSED)
        if focused is None:
            if audit.tab_order:
                break  # focus left the page's controls: one full cycle seen
            continue
        if first is not None and focused == first:
            break
        first = first or focused
        try:
            audit.tab_order.append(_first_line(page.locator(":focus").aria_snapshot(timeout=10000)))
        except PlaywrightError:  # focus inside a frame or shadow root: keep going
            audit.tab_order.append("(focused element outside the page's own tree)")
        for key in focused:
            if key in results:
                results[key].focusable = True
    audit.controls = [results[c.key] for c in controls]


def _run_browser(url: str, controls: tuple[Control, ...], executable: str) -> Audit:
    path = urllib.parse.urlsplit(url).path
    audit = Audit(path)
    if not Path(executable).is_file():
        audit.error, audit.error_code = f"{executable} not found", "UI_A11Y_BROWSER_UNAVAILABLE"
        return audit
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        audit.error, audit.error_code = "playwright not installed", "UI_A11Y_BROWSER_UNAVAILABLE"
        return audit

    def guard(route: Any) -> None:
        host = urllib.parse.urlsplit(route.request.url).hostname or ""
        if host in LOOPBACK or route.request.url.startswith(("data:", "about:")):
            route.continue_()
        else:
            audit.blocked.append(host)
            route.abort()

    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
            try:
                page = browser.new_context().new_page()
                page.route("**/*", guard)
                response = page.goto(url, wait_until="load", timeout=30000)
                if response is None or response.status != 200:
                    audit.error = f"HTTP {response.status if response else 'no response'}"
                    return audit
                _inspect(page, audit, controls)
            finally:
                browser.close()
    except PlaywrightError as exc:
        message = str(exc).splitlines()[0][:160]
        if "ERR_CONNECTION_REFUSED" in message:
            audit.error = "connection refused"
        else:
            audit.error = message
            audit.error_code = (
                "UI_A11Y_BROWSER_UNAVAILABLE"
                if "launch" in message.lower()
                else "UI_A11Y_PAGE_UNAVAILABLE"
            )
    return audit


def audit(url: str, controls: tuple[Control, ...] = CRITICAL, executable: str = CHROMIUM) -> Audit:
    """Load `url` in headless Chromium and audit its critical controls (loopback only)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        return Audit(url, error=f"refusing to open {host}: loopback only")
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_run_browser, url, controls, executable).result()


def audit_findings(result: Audit, controls: tuple[Control, ...] = CRITICAL) -> list[Finding]:
    if result.error is not None:
        return [Finding(result.error_code, result.path, "/", HOLD, result.error)]
    out = []
    by_key = {c.key: c for c in controls}
    for control in result.controls:
        wanted = f"{control.role} {control.name!r}"
        hint = by_key[control.key].hint
        if control.matches == 0:
            out.append(
                Finding(
                    "UI_A11Y_CONTROL_UNNAMED",
                    control.key,
                    "/",
                    BLOCKING,
                    f"no {wanted}; {hint} is {control.present_as}",
                )
            )
        elif control.matches > 1:
            out.append(
                Finding(
                    "UI_A11Y_CONTROL_AMBIGUOUS",
                    control.key,
                    "/",
                    BLOCKING,
                    f"{control.matches} elements are {wanted}",
                )
            )
        if not control.focusable:
            out.append(
                Finding(
                    "UI_A11Y_CONTROL_NOT_FOCUSABLE",
                    control.key,
                    "/",
                    BLOCKING,
                    f"Tab never reaches {wanted} (nor {hint})",
                )
            )
    for host in sorted(set(result.blocked)):
        out.append(
            Finding(
                "UI_A11Y_EXTERNAL_REQUEST_BLOCKED",
                result.path,
                "/",
                INFO,
                f"the page tried to reach {host}",
            )
        )
    return out


def deployed_release(system: UiSystem) -> str | None:
    """The release state/ui.json says is deployed (None: unreadable)."""
    doc, problem = system.read_state("ui.json", {})
    release = doc.get("release") if problem is None and isinstance(doc, dict) else None
    return release if isinstance(release, str) else None


def release_findings(system: UiSystem, result: Audit | None = None) -> list[Finding]:
    """The deployed release against the intended one (and against what the page says)."""
    deployed, problem = system.read_state("ui.json", {})
    if problem is not None:
        return [problem]
    reference, _ = system.reference()
    lineage = reference.get("ui")
    intended = lineage.get("release") if isinstance(lineage, dict) else None
    current = deployed.get("release") if isinstance(deployed, dict) else None
    out = []
    if intended is not None and current != intended:
        out.append(
            Finding(
                "UI_RELEASE_NOT_INTENDED",
                "state/ui.json",
                "/release",
                BLOCKING,
                f"{current} deployed, {intended} intended",
            )
        )
    if result is not None and result.error is None and result.release != current:
        out.append(
            Finding(
                "UI_RELEASE_MISMATCH",
                result.path,
                "/",
                BLOCKING,
                f"the page says {result.release}, state/ui.json says {current}",
            )
        )
    return out


# --- containment (only through run.action) ------------------------------------------------


def rollback_release(system: UiSystem) -> dict[str, Any]:
    """Deploy the previous release again; the undo data is the document deployed now."""
    doc = system.live.read_state("ui.json")
    if not isinstance(doc, dict) or not isinstance(doc.get("previous"), str):
        raise ValueError("state/ui.json names no previous release to roll back to")
    current, previous = doc.get("release"), doc["previous"]
    if current == previous:
        return {"rolled_back": False, "release": current, "reason": "already on previous"}
    reference, _ = system.reference()
    declared = reference.get("ui")
    lineage: dict[str, Any] = declared if isinstance(declared, dict) else {}
    new: dict[str, Any] = {"release": previous, "rolled_back_from": current}
    if lineage.get("release") == previous and isinstance(lineage.get("previous"), str):
        new["previous"] = lineage["previous"]
    system.write_state("ui.json", new)
    return {"rolled_back": True, "release": previous, "from": current, "before": doc}


def restore_release(system: UiSystem, document: dict[str, Any], expect: str) -> dict[str, Any]:
    """Undo of rollback: roll forward to `document`, if `expect` is still deployed."""
    doc, problem = system.read_state("ui.json", {})
    current = doc.get("release") if isinstance(doc, dict) else None
    if problem is None and current == document.get("release"):
        return {"restored": False, "release": current, "reason": "already deployed"}
    if current != expect:
        return {"restored": False, "release": current, "reason": "another release is deployed"}
    system.write_state("ui.json", document)
    return {"restored": True, "release": document.get("release")}


@undoable("ui_a11y.restore_release")
def _undo_rollback(target: Target, document: dict[str, Any], expect: str) -> dict[str, Any]:
    return restore_release(UiSystem.from_target(target), document, expect)
