"""The PROV-JSON written for a run is valid PROV and says what happened."""

from __future__ import annotations

from pathlib import Path

import pytest
from prov.model import ProvDocument

pytestmark = pytest.mark.slow


def test_prov_round_trips_and_names_plan_agent_and_outputs(sealed: tuple[str, Path]) -> None:
    _, ws = sealed
    path = next((ws / "10_evidence/runs").glob("*.prov.json"))
    doc = ProvDocument.deserialize(content=path.read_text(), format="json")
    records = {type(r).__name__ for r in doc.get_records()}
    assert {
        "ProvEntity",
        "ProvActivity",
        "ProvAgent",
        "ProvUsage",
        "ProvGeneration",
        "ProvAssociation",
    } <= records
    text = path.read_text()
    assert "prov:Plan" in text and "RBK-catalog-checksum-mismatch" in text
    assert '"kfm:outcome": "passed"' in text
    notebook = next((ws / "10_evidence/runs").glob("RUN-*.ipynb")).name
    assert notebook in text
