"""scrapbook's output format, written and read without importing scrapbook.

A scrap is a `display_data` output whose MIME type is
`application/scrapbook.scrap.<encoder>+json`, payload `{name, data, encoder, version}`,
metadata `{"scrapbook": {"name", "data": true, "display": false}}`. That is exactly what
`scrapbook.glue` writes, so `scrapbook.read_notebook(path).scraps` reads ours; importing
scrapbook in a kernel costs seconds (pandas, pyarrow), so the kernel side writes it here.
"""

from __future__ import annotations

from typing import Any

MIME_PREFIX = "application/scrapbook.scrap."
SCRAP_VERSION = 1


def encoder_for(value: Any) -> str:
    return "text" if isinstance(value, str) else "json"


def bundle(name: str, value: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(data, metadata) for IPython's `display(data, metadata=..., raw=True)`."""
    encoder = encoder_for(value)
    payload = {"name": name, "data": value, "encoder": encoder, "version": SCRAP_VERSION}
    metadata = {"scrapbook": {"name": name, "data": True, "display": False}}
    return {f"{MIME_PREFIX}{encoder}+json": payload}, metadata


def read(nb: Any) -> dict[str, Any]:
    """All scraps of a notebook (dict-like nbformat node or plain dict), by name, in order."""
    found: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") not in ("display_data", "execute_result"):
                continue
            for mime, payload in (output.get("data") or {}).items():
                if mime.startswith(MIME_PREFIX) and isinstance(payload, dict):
                    found[str(payload.get("name"))] = payload.get("data")
    return found
