"""The HTML report in a real headless Chromium (Debian's), and bundles verified anywhere."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .conftest import KFM_BIN, NOTEBOOKS, Cli

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def test_report_loads_clean_in_chromium(cli: Cli, sealed: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    incident_id, ws = sealed
    cli("incident", "note", incident_id, "--root-cause", "assets rewritten in place")
    head = json.loads(cli("incident", "show", incident_id, "--json").stdout)["ledger_head"]
    result = cli("report", incident_id)
    assert result.exit_code == 0, result.output
    report = Path(result.stdout.strip())
    assert report.parent == ws / "90_postmortem" and report.suffix == ".html"
    errors: list[str] = []
    remote: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "request",
                lambda r: (
                    remote.append(r.url) if not r.url.startswith(("file:", "data:")) else None
                ),
            )
            page.goto(report.as_uri(), wait_until="load")
            title = page.inner_text("#incident-title")
            body = page.inner_text("body")
            runs = page.inner_text("#runs")
            evidence_rows = page.locator("#evidence tr").count()
            images = page.locator("details.nb img").count()
            first_image_ok = page.evaluate(
                "() => { const i = document.querySelector('details.nb img');"
                " return i !== null && i.naturalWidth > 0; }"
            )
        finally:
            browser.close()
    assert errors == [] and remote == []
    assert incident_id in title and "Sealed template" in title
    assert "Evidence intact" in body and "assets rewritten in place" in body
    assert head in body  # the report states the ledger head it was made from
    assert "RBK-catalog-checksum-mismatch" in runs and "passed" in runs
    assert "CAT_ASSET_DIGEST_MISMATCH" in runs
    ledger_text = (ws / "10_evidence/ledger.jsonl").read_text().splitlines()
    code = next(e for e in map(json.loads, ledger_text) if e["kind"] == "run")["data"]["code"]
    assert f"kfm-runbooks {code['version']} · {code['python']}" in runs  # the code of the run
    assert f"{code['distributions_sha256'][:16]}…" in runs
    assert f"{len(code['modules'])} modules" in runs
    assert evidence_rows >= 5
    assert images >= 1 and first_image_ok  # the triage plot, embedded, renders


class _Tags(HTMLParser):
    """Every tag and attribute actually in a page (escaped source text is not a tag)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.attributes: list[tuple[str, str]] = []
        self.styles = 0
        self.csp = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.names.add(tag)
        self.styles += tag == "style"
        values = {k: v or "" for k, v in attrs}
        if tag == "meta" and values.get("http-equiv", "").lower() == "content-security-policy":
            self.csp = values.get("content", "")
        self.attributes += [(k.lower(), v.strip().lower()) for k, v in values.items()]


def test_report_runs_no_output_script_and_loads_nothing_external(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    """A notebook's outputs may hold scripts, frames, remote images, event handlers and
    styles that call out: the report keeps none of them alive, and plots still render."""
    from playwright.sync_api import sync_playwright

    incident_id, _ = incident
    run = cli(
        "run",
        str(NOTEBOOKS / "outputs_active_content.ipynb"),
        "--incident",
        incident_id,
        "--target",
        str(sandbox),
    )
    assert run.exit_code == 0, run.output
    report = Path(cli("report", incident_id).stdout.strip())
    tags = _Tags()
    tags.feed(report.read_text())
    assert tags.csp.startswith("default-src 'none'")
    active = {"script", "iframe", "object", "embed", "form", "link", "style", "svg", "base"}
    assert tags.names & active == {"style"} and tags.styles == 1  # our own stylesheet only
    assert [a for a in tags.attributes if a[0].startswith("on")] == []
    assert [
        v
        for name, v in tags.attributes
        if name in ("href", "src")
        and ":" in v.split("/")[0]
        and not v.startswith(("data:image/", "http:", "https:"))
    ] == []
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "request",
                lambda r: (
                    requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None
                ),
            )
            page.goto(report.as_uri(), wait_until="load")
            page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
            page.wait_for_load_state("load")
            pwned = page.evaluate("() => window.kfmPwned === undefined ? null : window.kfmPwned")
            title = page.title()
            text = page.inner_text("body")
            plots = page.evaluate(
                "() => [...document.querySelectorAll('details.nb img')]"
                ".filter(i => i.src.startsWith('data:image/png') && i.naturalWidth > 0).length"
            )
        finally:
            browser.close()
    assert pwned is None and "pwned" not in title
    assert requests == [] and errors == []
    assert "active content displayed" in text and "bold" in text
    assert plots >= 1  # the matplotlib figure, embedded, renders


def test_bundle_verifies_without_the_repo(
    cli: Cli, sealed: tuple[str, Path], tmp_path: Path
) -> None:
    incident_id, _ = sealed
    bundle = Path(cli("bundle", incident_id).stdout.strip())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFM_")}
    ok = subprocess.run(
        [str(KFM_BIN), "verify", "--bundle", str(bundle), "--json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    unpacked = tmp_path / "unpacked"
    with tarfile.open(bundle) as tar:
        tar.extractall(unpacked, filter="data")
    sums = subprocess.run(
        ["sha256sum", "--strict", "-c", "BUNDLE.sha256"],
        cwd=unpacked,
        capture_output=True,
        text=True,
    )
    assert sums.returncode == 0, sums.stdout


def _repack(source: Path, dest: Path, change: str) -> None:
    with tarfile.open(source) as tar_in, tarfile.open(dest, "w:gz") as tar_out:
        for member in tar_in.getmembers():
            data = tar_in.extractfile(member).read() if member.isfile() else None
            if data is not None and member.name.endswith(change):
                data = data[:-2] + bytes([data[-2] ^ 1]) + data[-1:]
            tar_out.addfile(member, io.BytesIO(data) if data is not None else None)


def test_tampered_bundle_is_detected(cli: Cli, sealed: tuple[str, Path], tmp_path: Path) -> None:
    incident_id, _ = sealed
    bundle = Path(cli("bundle", incident_id).stdout.strip())
    tampered = tmp_path / "tampered.tar.gz"
    _repack(bundle, tampered, ".prov.json")
    result = cli("verify", "--bundle", str(tampered))
    assert result.exit_code == 1
    assert "sha256 differs from BUNDLE.json" in result.stdout


def test_bundle_refuses_unsafe_members(cli: Cli, tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    result = cli("verify", "--bundle", str(evil))
    assert result.exit_code == 1 and "unsafe archive member" in result.stdout
    assert not (tmp_path.parent / "escape.txt").exists()
