"""The four ui runbooks against stock pieces nobody here wrote a server for.

Python's own `http.server` serves static pages with known axe-core violations and a clean
page, and static JSON for the layer / time / story / catalog routes (tests/stock/ui_site.py),
on loopback. Each runbook runs through the real CLI, papermill and kernel, with a target that
uses only the contract keys (api.url, ui.*, remote), and must reach the verdict a human
would: no sandbox file exists anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Cli
from .helpers import applied_actions, finding_codes, run_json
from .stock.ui_site import CONTROLS, Site, serve

pytestmark = pytest.mark.slow

A11Y = "RBK-ui-accessibility-regression"
REGISTRY = "RBK-ui-layer-registry-mismatch"
TIMELINE = "RBK-ui-timeline-desync"
STORIES = "RBK-ui-story-node-render"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serve(tmp_path_factory.mktemp("stock-ui")) as running:
        yield running


def _run(
    cli: Cli, incident: tuple[str, Path], runbook: str, target: Path, *extra: str
) -> dict[str, Any]:
    out = run_json(cli, runbook, incident[0], target, *extra)
    assert out["statuses"], out["_stderr"][-2000:]
    return out


# --- accessibility ---------------------------------------------------------------------------


def test_an_accessible_page_with_its_controls_passes(
    site: Site, cli: Cli, incident: tuple[str, Path]
) -> None:
    target = site.target(
        "a11y-clean", ui=site.ui(page="clean.html", required_controls=CONTROLS, release="r7")
    )
    out = _run(cli, incident, A11Y, target)
    assert out["statuses"] == {
        "wcag-no-blocking-violations": "PASS",
        "required-controls-named": "PASS",
        "required-controls-keyboard": "PASS",
        "deployed-release-intended": "PASS",
    }
    assert out["_exit"] == 0


def test_missing_alt_text_and_button_names_fail_even_with_every_control(
    site: Site, cli: Cli, incident: tuple[str, Path]
) -> None:
    target = site.target("a11y-broken", ui=site.ui(page="broken.html", required_controls=CONTROLS))
    out = _run(cli, incident, A11Y, target)
    assert out["statuses"] == {
        "wcag-no-blocking-violations": "FAIL",
        "required-controls-named": "PASS",
        "required-controls-keyboard": "PASS",
    }
    assert out["_exit"] == 1
    assert {"UI_A11Y_VIOLATION"} == set(finding_codes(incident[1], out))


def test_an_accessible_page_without_required_controls_passes(
    site: Site, cli: Cli, incident: tuple[str, Path]
) -> None:
    target = site.target("a11y-plain", ui=site.ui(page="plain.html"))
    out = _run(cli, incident, A11Y, target)
    assert out["statuses"] == {"wcag-no-blocking-violations": "PASS"}
    assert out["_exit"] == 0


def test_a_page_that_cannot_be_loaded_is_hold(
    site: Site, cli: Cli, incident: tuple[str, Path]
) -> None:
    target = site.target("a11y-gone", ui=site.ui(page="gone.html", required_controls=CONTROLS))
    out = _run(cli, incident, A11Y, target)
    assert set(out["statuses"].values()) == {"HOLD"}
    assert out["_exit"] != 0


def test_without_an_admin_interface_containment_is_a_manual_action(
    site: Site, cli: Cli, incident: tuple[str, Path]
) -> None:
    target = site.target("a11y-manual", ui=site.ui(page="broken.html"))
    out = _run(cli, incident, A11Y, target, "--apply")
    assert out["statuses"] == {"wcag-no-blocking-violations": "FAIL"}
    [action] = applied_actions(incident[1])
    assert action["manual"] is True and action["applied"] is False
    assert "previous UI release" in action["command"]


# --- layers, time steps, stories ---------------------------------------------------------------


def _system(site: Site, name: str, system: str, **ui: Any) -> Path:
    return site.target(name, api=site.api(system), ui=site.ui(system, **ui))


@pytest.mark.parametrize(
    ("runbook", "system", "statuses"),
    [
        (REGISTRY, "good", {"published-layers-load": "PASS", "registry-matches-intended": "PASS"}),
        (
            REGISTRY,
            "tiles-missing",
            {"published-layers-load": "FAIL", "registry-matches-intended": "PASS"},
        ),
        (
            TIMELINE,
            "good",
            {
                "served-steps-match-registry": "PASS",
                "registry-extents-coherent": "PASS",
                "story-times-served": "PASS",
            },
        ),
        (
            TIMELINE,
            "desync",
            {
                "served-steps-match-registry": "FAIL",
                "registry-extents-coherent": "PASS",
                "story-times-served": "PASS",  # January, the pinned month, is still served
            },
        ),
        (STORIES, "good", {"story-nodes-render": "PASS", "intended-stories-published": "PASS"}),
        (
            STORIES,
            "broken-story",
            {"story-nodes-render": "FAIL", "intended-stories-published": "PASS"},
        ),
    ],
)
def test_stock_api_verdicts(
    site: Site,
    cli: Cli,
    incident: tuple[str, Path],
    runbook: str,
    system: str,
    statuses: dict[str, str],
) -> None:
    out = _run(cli, incident, runbook, _system(site, f"{runbook}-{system}", system))
    assert out["statuses"] == statuses
    assert out["_exit"] == (0 if set(statuses.values()) == {"PASS"} else 1)


@pytest.mark.parametrize(
    ("runbook", "check", "key"),
    [
        (REGISTRY, "registry-matches-intended", "layer_registry"),
        (STORIES, "story-nodes-render", "stories"),
    ],
)
def test_without_the_reference_the_verdict_is_hold_naming_it(
    site: Site, cli: Cli, incident: tuple[str, Path], runbook: str, check: str, key: str
) -> None:
    target = _system(site, f"{runbook}-noref", "good", **{key: None})
    out = _run(cli, incident, runbook, target)
    assert out["statuses"][check] == "HOLD"
    assert "PASS" not in {out["statuses"][check]}
    [detail] = [c["detail"] for c in out["checks"] if c["name"] == check]
    assert f"ui.{key}" in detail
    assert out["_exit"] != 0


def test_a_broken_layer_without_admin_is_handed_to_a_human(
    site: Site, cli: Cli, incident: tuple[str, Path]
) -> None:
    out = _run(cli, incident, REGISTRY, _system(site, "reg-manual", "tiles-missing"), "--apply")
    assert out["statuses"]["published-layers-load"] == "FAIL"
    actions = applied_actions(incident[1])
    assert [a["title"] for a in actions] == [
        "Withdraw layer roads from the published registry",
        "Restore the tiles of roads",
    ]
    assert all(a["manual"] and not a["applied"] for a in actions)
