"""Sandbox part: two runs of the daily hydrology pipeline on identical inputs.

Seeded fault (faulty variant): run B wrote `daily_summary.csv` with its rows in a different
order (an unordered set iterated during the write), so the same code, spec and inputs gave
two different output digests (RBK-pipelines-determinism-drift). `stations.json` agrees.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ROOT = "pipelines/determinism"
RUNS = ("run-20260601a", "run-20260601b")
DRIFTING = "daily_summary.csv"
ROWS = [
    ("06887500", "2026-05-31", 412.0),
    ("06892350", "2026-05-31", 1180.5),
    ("07144100", "2026-05-31", 96.25),
    ("07182510", "2026-05-31", 233.0),
]


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _outputs(shuffled: bool) -> dict[str, bytes]:
    rows = sorted(ROWS, key=lambda r: r[2]) if shuffled else sorted(ROWS)
    summary = "site_no,date,mean_discharge_cfs\n" + "".join(f"{s},{d},{q}\n" for s, d, q in rows)
    stations = {"stations": sorted(r[0] for r in ROWS), "count": len(ROWS)}
    return {
        DRIFTING: summary.encode(),
        "stations.json": (json.dumps(stations, indent=2, sort_keys=True) + "\n").encode(),
    }


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    base = folder / ROOT
    raw = "".join(f"{s},{d},{q}\n" for s, d, q in ROWS).encode()
    for run in RUNS:
        outputs = _outputs(shuffled=not clean and run == RUNS[1])
        for name, data in outputs.items():
            path = base / "runs" / run / "out" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        manifest = {
            "code_ref": "git:5d1c3f0e9a7b2c4d6e8f0a1b3c5d7e9f1a2b4c6d",
            "inputs": {"raw/usgs-nwis-daily-2026-05-31.csv": _sha(raw)},
            "output_root": f"{run}/out",
            "outputs": {name: _sha(data) for name, data in sorted(outputs.items())},
            "pipeline": "kfm.pipeline.sbx.hydro-daily",
            "run_id": run,
            "spec_hash": _sha(b"kfm.pipeline.sbx.hydro-daily spec v3"),
        }
        (base / "runs" / f"{run}.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    (base / "holds.json").write_text('{\n  "holds": {}\n}\n', encoding="utf-8")
    section = {"repo_root": ROOT, "runs": [f"{ROOT}/runs"], "holds": f"{ROOT}/holds.json"}
    faults = (
        []
        if clean
        else [
            f"pipelines: {RUNS[1]} wrote {DRIFTING} differently from {RUNS[0]} on identical inputs "
            "(DETERMINISM_OUTPUT_DRIFT) — RBK-pipelines-determinism-drift"
        ]
    )
    return {"pipelines_determinism": section}, faults
