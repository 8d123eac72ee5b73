"""W3C PROV-JSON for one run, built with the `prov` library.

- the run is an activity; it `used` the runbook (an entity typed prov:Plan), the target
  file and the parameters;
- the executed notebook `wasGeneratedBy` the run and `wasDerivedFrom` the runbook;
- it `used` the code that made its call, as the kernel recorded it (codeprov.py): the
  kfm-runbooks package (version from its metadata, Python), the kernel environment (sha256
  of its installed-distribution list) and each package module it imported (sha256);
- the run `wasAssociatedWith` the operator (prov:Person) under the runbook as plan, and
  with kfm-runbook (prov:SoftwareAgent), which `actedOnBehalfOf` the operator.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prov.model import ProvDocument

NAMESPACE = "https://kfm.example/ns/runbooks#"


def run_document(
    *,
    incident_id: str,
    run_id: str,
    runbook_id: str,
    runbook_sha256: str,
    runbook_version: str,
    actor: str,
    started: dt.datetime,
    ended: dt.datetime,
    outcome: str,
    parameters: dict[str, Any],
    target_name: str,
    target_sha256: str,
    notebook_name: str,
    notebook_sha256: str,
    tool_version: str,
    code: dict[str, Any] | None = None,
) -> str:
    """The run as PROV-JSON text (deterministic key order)."""
    doc = ProvDocument()
    doc.set_default_namespace(NAMESPACE)
    doc.add_namespace("kfm", NAMESPACE)
    runbook = doc.entity(
        f"kfm:runbook/{runbook_id}/{runbook_sha256[:16]}",
        {
            "prov:type": "prov:Plan",
            "prov:label": runbook_id,
            "kfm:sha256": runbook_sha256,
            "kfm:version": runbook_version,
        },
    )
    target = doc.entity(
        f"kfm:target/{target_sha256[:16]}",
        {"prov:label": target_name, "kfm:sha256": target_sha256},
    )
    params = doc.entity(
        f"kfm:parameters/{run_id}",
        {"prov:label": "parameters", "kfm:json": _json(parameters)},
    )
    notebook = doc.entity(
        f"kfm:evidence/{notebook_name}",
        {
            "prov:type": "kfm:ExecutedNotebook",
            "kfm:sha256": notebook_sha256,
            "kfm:incident": incident_id,
        },
    )
    run = doc.activity(
        f"kfm:run/{run_id}",
        started,
        ended,
        {"prov:label": f"{runbook_id} on {incident_id}", "kfm:outcome": outcome},
    )
    operator = doc.agent(f"kfm:actor/{actor}", {"prov:type": "prov:Person", "prov:label": actor})
    software = doc.agent(
        f"kfm:software/kfm-runbook/{tool_version}",
        {"prov:type": "prov:SoftwareAgent", "prov:label": f"kfm-runbook {tool_version}"},
    )
    doc.used(run, runbook)
    doc.used(run, target)
    doc.used(run, params)
    for entity in _code_entities(doc, code):
        doc.used(run, entity)
    doc.wasGeneratedBy(notebook, run, ended)
    doc.wasAssociatedWith(run, operator, runbook)
    doc.wasAssociatedWith(run, software)
    doc.actedOnBehalfOf(software, operator, run)
    doc.wasDerivedFrom(notebook, runbook, run)
    text = doc.serialize(format="json", indent=2, sort_keys=True)
    return str(text) + "\n"


def _code_entities(doc: ProvDocument, code: dict[str, Any] | None) -> list[Any]:
    """The code the kernel ran, as entities (none when the kernel recorded none)."""
    if not code:
        return []
    version = str(code.get("version"))
    entities = [
        doc.entity(
            f"kfm:code/{code.get('package')}/{version}",
            {
                "prov:type": "kfm:SoftwarePackage",
                "prov:label": f"{code.get('package')} {version}",
                "kfm:version": version,
                "kfm:python": str(code.get("python")),
            },
        ),
        doc.entity(
            f"kfm:environment/{str(code.get('distributions_sha256'))[:16]}",
            {
                "prov:type": "kfm:PythonEnvironment",
                "prov:label": f"{code.get('distributions')} installed distributions",
                "kfm:sha256": str(code.get("distributions_sha256")),
            },
        ),
    ]
    for rel, digest in sorted((code.get("modules") or {}).items()):
        entities.append(
            doc.entity(
                f"kfm:code/module/{rel}/{str(digest)[:16]}",
                {"prov:type": "kfm:Module", "prov:label": rel, "kfm:sha256": str(digest)},
            )
        )
    return entities


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, ensure_ascii=False)
