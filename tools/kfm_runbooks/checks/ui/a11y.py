"""Accessibility regressions: the deployed UI page, audited by a real engine in a real browser.

The page the target names (`ui.url`) is loaded in headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright) and audited two ways:

1. axe-core (bundled by the `axe-playwright-python` wheel) runs in the page and reports
   WCAG violations by impact: critical / serious are UI_A11Y_VIOLATION (blocking: FAIL),
   moderate / minor are UI_A11Y_VIOLATION_MINOR (info: reported, not a verdict);
2. the target's required controls (`ui.required_controls: [{role, name, selector?}]`)
   must each be found exactly once by role and accessible name through the browser's
   accessibility tree, and be reachable with Tab. Codes: UI_A11Y_CONTROL_UNNAMED,
   UI_A11Y_CONTROL_AMBIGUOUS, UI_A11Y_CONTROL_NOT_FOCUSABLE.

A page that cannot be loaded is UI_A11Y_PAGE_UNAVAILABLE, no browser or engine
UI_A11Y_BROWSER_UNAVAILABLE (both HOLD: nothing was checked). The page and everything it
loads may reach only loopback and the hosts in `remote.allow` (Service.allowed); other
requests are refused (UI_A11Y_EXTERNAL_REQUEST_BLOCKED, info). When the target names the
intended release (`ui.release`), the page's `data-release` must say it
(UI_RELEASE_NOT_INTENDED).

Containment rolls the deployed release back through the admin interface the target names
(op `ui.rollback_release`); its undo (`ui.restore_release`) rolls forward to exactly the
release document that was deployed. Playwright is imported only inside `audit`, which runs
in a worker thread (the sync API refuses a running asyncio loop, which kernels have).
"""

from __future__ import annotations

import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import TargetError
from ...target import Target
from .. import BLOCKING, HOLD, INFO, Finding, undoable
from ..common.service import Service
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
MAX_TABS = 60
FAIL_IMPACTS = ("critical", "serious")
IMPACTS = ("critical", "serious", "moderate", "minor")
A11Y_CODES = frozenset(
    {
        "UI_A11Y_VIOLATION",
        "UI_A11Y_CONTROL_UNNAMED",
        "UI_A11Y_CONTROL_AMBIGUOUS",
        "UI_A11Y_CONTROL_NOT_FOCUSABLE",
    }
)
CONTROL_CODES = frozenset(
    {"UI_A11Y_CONTROL_UNNAMED", "UI_A11Y_CONTROL_AMBIGUOUS", "UI_A11Y_CONTROL_NOT_FOCUSABLE"}
)
RELEASE_CODES = frozenset({"UI_RELEASE_NOT_INTENDED"})
UNAVAILABLE_CODES = frozenset({"UI_A11Y_PAGE_UNAVAILABLE", "UI_A11Y_BROWSER_UNAVAILABLE"})


@dataclass(frozen=True)
class Control:
    """A required control: how assistive technology must find it (and where it should be)."""

    key: str
    role: str
    name: str
    hint: str = ""  # CSS selector of the element meant to be this control (for the report)


def required_controls(target: Target) -> tuple[Control, ...]:
    """`ui.required_controls` of the target (empty: none required). Malformed: TargetError."""
    raw = Service.from_target(target).section("ui").get("required_controls")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise TargetError(
            f"target {target.path}: 'ui.required_controls' must be a list of "
            "{role, name, selector?} entries"
        )
    out: list[Control] = []
    for index, entry in enumerate(raw):
        role = entry.get("role") if isinstance(entry, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        hint = entry.get("selector", "") if isinstance(entry, dict) else ""
        if not (isinstance(role, str) and role and isinstance(name, str) and name):
            raise TargetError(
                f"target {target.path}: 'ui.required_controls[{index}]' needs a role and an "
                "accessible name, e.g. {role: button, name: Play timeline}"
            )
        if not isinstance(hint, str):
            raise TargetError(f"target {target.path}: 'ui.required_controls[{index}].selector'")
        key = str(entry.get("key") or name)
        out.append(Control(key, role, name, hint))
    return tuple(out)


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
class Violation:
    """One axe-core rule the page violates."""

    rule: str
    impact: str
    help: str
    nodes: int
    targets: list[str]
    tags: list[str]

    @property
    def blocking(self) -> bool:
        return self.impact in FAIL_IMPACTS


@dataclass
class Audit:
    path: str
    release: str | None = None  # what the page says (body data-release)
    snapshot: str = ""  # ARIA snapshot of the page body
    tab_order: list[str] = field(default_factory=list)
    controls: list[ControlResult] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    rules_passed: int = 0  # axe rules that found nothing to report
    engine: str = ""  # axe-core version
    blocked: list[str] = field(default_factory=list)  # refused requests (hosts)
    error: str | None = None
    error_code: str = "UI_A11Y_PAGE_UNAVAILABLE"
    screenshot: bytes = b""  # PNG of the page as loaded (evidence)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "screenshot"}

    def by_impact(self) -> dict[str, int]:
        return {i: sum(1 for v in self.violations if v.impact == i) for i in IMPACTS}


_DESCRIBE = """el => {
  const attrs = ['role', 'aria-label', 'tabindex'].filter(a => el.hasAttribute(a))
    .map(a => `${a}=${JSON.stringify(el.getAttribute(a))}`);
  return `<${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${attrs.length ? ' ' +
    attrs.join(' ') : ''}>`;
}"""
_FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  return (e.getAttribute('data-kfm-control') || '') + '\\u0000' +
    (e.getAttribute('data-kfm-hint') || '') + '\\u0000' + (e.id || e.tagName);
}"""


def _first_line(snapshot: str) -> str:
    line = snapshot.strip().splitlines()[0] if snapshot.strip() else "(nothing)"
    return line.removeprefix("- ").rstrip(":")


def _axe(page: Any, audit: Audit) -> None:
    from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]

    response = Axe().run(page).response
    audit.engine = str((response.get("testEngine") or {}).get("version", ""))
    audit.rules_passed = len(response.get("passes") or [])
    for rule in response.get("violations") or []:
        nodes = rule.get("nodes") or []
        audit.violations.append(
            Violation(
                str(rule.get("id")),
                str(rule.get("impact") or "minor"),
                str(rule.get("help", ""))[:200],
                len(nodes),
                [" ".join(map(str, n.get("target") or []))[:120] for n in nodes[:5]],
                [str(t) for t in rule.get("tags") or []],
            )
        )
    order = {impact: i for i, impact in enumerate(IMPACTS)}
    audit.violations.sort(key=lambda v: (order.get(v.impact, 9), v.rule))


def _controls(page: Any, audit: Audit, controls: tuple[Control, ...]) -> None:
    from playwright.sync_api import Error as PlaywrightError

    results: dict[str, ControlResult] = {}
    for control in controls:
        found = page.get_by_role(control.role, name=control.name, exact=True)
        count = found.count()
        if count == 1:
            found.evaluate("(el, key) => el.setAttribute('data-kfm-control', key)", control.key)
        present = "-"
        if control.hint:
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
        for key in str(focused).split("\u0000")[:2]:
            if key in results:
                results[key].focusable = True
    audit.controls = [results[c.key] for c in controls]


def _run_browser(url: str, controls: tuple[Control, ...], executable: str, svc: Service) -> Audit:
    path = urllib.parse.urlsplit(url).path or "/"
    audit = Audit(path)
    if not Path(executable).is_file():
        audit.error, audit.error_code = f"{executable} not found", "UI_A11Y_BROWSER_UNAVAILABLE"
        return audit
    try:
        import axe_playwright_python  # type: ignore[import-untyped]  # noqa: F401
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        audit.error = f"{exc.name} not installed (pip install 'kfm-runbooks[ui]')"
        audit.error_code = "UI_A11Y_BROWSER_UNAVAILABLE"
        return audit

    def guard(route: Any) -> None:
        requested = route.request.url
        if requested.startswith(("data:", "about:", "blob:")):
            route.continue_()
            return
        try:
            svc.allowed(requested)
        except TargetError:
            audit.blocked.append(urllib.parse.urlsplit(requested).hostname or requested[:60])
            route.abort()
            return
        route.continue_()

    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
            try:
                page = browser.new_context().new_page()
                page.route("**/*", guard)
                response = page.goto(url, wait_until="load", timeout=30000)
                status = response.status if response is not None else None
                svc.note_connection("browser", url, method="GET", status=status)
                if status != 200:
                    audit.error = f"HTTP {status if status is not None else 'no response'}"
                    return audit
                audit.release = page.get_attribute("body", "data-release")
                audit.screenshot = page.screenshot(full_page=True)
                audit.snapshot = page.locator("body").aria_snapshot()
                _axe(page, audit)
                _controls(page, audit, controls)
            finally:
                browser.close()
    except PlaywrightError as exc:
        message = str(exc).splitlines()[0][:160]
        if "ERR_CONNECTION_REFUSED" in message:
            audit.error = "connection refused"
            svc.note_connection("browser", url, method="GET", error="connection refused")
        else:
            audit.error = message
            audit.error_code = (
                "UI_A11Y_BROWSER_UNAVAILABLE"
                if "launch" in message.lower()
                else "UI_A11Y_PAGE_UNAVAILABLE"
            )
    return audit


def audit(svc: Service, controls: tuple[Control, ...] = (), executable: str = CHROMIUM) -> Audit:
    """Load the target's `ui.url` in headless Chromium: axe-core + the required controls."""
    try:
        url = svc.url("ui")
        svc.allowed(url)
    except TargetError as exc:
        return Audit("ui.url", error=str(exc).splitlines()[0])
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_run_browser, url, controls, executable, svc).result()


def audit_findings(result: Audit, controls: tuple[Control, ...] = ()) -> list[Finding]:
    if result.error is not None:
        return [Finding(result.error_code, result.path, "/", HOLD, result.error)]
    out = []
    for violation in result.violations:
        where = ", ".join(violation.targets[:3])
        out.append(
            Finding(
                "UI_A11Y_VIOLATION" if violation.blocking else "UI_A11Y_VIOLATION_MINOR",
                violation.rule,
                "/",
                BLOCKING if violation.blocking else INFO,
                f"{violation.impact}: {violation.help} ({violation.nodes} element(s): {where})",
            )
        )
    by_key = {c.key: c for c in controls}
    for control in result.controls:
        wanted = f"{control.role} {control.name!r}"
        hint = by_key[control.key].hint if control.key in by_key else ""
        seen = f"; {hint} is {control.present_as}" if hint else ""
        if control.matches == 0:
            out.append(
                Finding("UI_A11Y_CONTROL_UNNAMED", control.key, "/", BLOCKING, f"no {wanted}{seen}")
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
                    f"Tab never reaches {wanted}" + (f" (nor {hint})" if hint else ""),
                )
            )
    for host in sorted(set(result.blocked)):
        out.append(
            Finding(
                "UI_A11Y_EXTERNAL_REQUEST_BLOCKED",
                result.path,
                "/",
                INFO,
                f"the page tried to reach {host} (not loopback, not in remote.allow)",
            )
        )
    return out


def intended_release(system: UiSystem) -> str | None:
    value = system.section.get("release")
    return value if isinstance(value, str) and value else None


def release_findings(system: UiSystem, result: Audit) -> list[Finding]:
    """The release the page says (body data-release) against `ui.release`, when named."""
    intended = intended_release(system)
    if intended is None or result.error is not None or result.release == intended:
        return []
    return [
        Finding(
            "UI_RELEASE_NOT_INTENDED",
            result.path,
            "/release",
            BLOCKING,
            f"the page says release {result.release}, {intended} intended (ui.release)",
        )
    ]


# --- containment (only through run.action, through the target's admin interface) --------

ROLLBACK_INSTRUCTION = (
    "Redeploy the previous UI release (the one before {release}) with your deployment "
    "tool, then re-run this runbook to verify"
)


def rollback_release(system: UiSystem) -> dict[str, Any]:
    """Deploy the previous release again (admin op ui.rollback_release).

    The admin answers {rolled_back, release, from, before}: `before` is the release
    document deployed until now, the undo data."""
    return system.admin("ui.rollback_release", {})


def restore_release(system: UiSystem, document: dict[str, Any], expect: str) -> dict[str, Any]:
    """Undo of rollback: roll forward to `document`, if `expect` is still deployed."""
    return system.admin("ui.restore_release", {"document": document, "expect": expect})


@undoable("ui_a11y.restore_release")
def _undo_rollback(target: Target, document: dict[str, Any], expect: str) -> dict[str, Any]:
    return restore_release(UiSystem.from_target(target), document, expect)
