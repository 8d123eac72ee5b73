"""Focus Mode for the live sandbox: an input gate, an index-based retriever, cited answers.

Small but real: the gate blocks prompt-injection patterns before retrieval; the
retriever scores documents of the retrieval index (state/focus_index.json, built from
the corpus by `build_index`) by term overlap (the index build, retriever and gate are
the reference algorithms of checks/ai/reference.py, which the checks judge any Focus
Mode by); every answer cites the documents it used, and the citation policy can refuse
uncited answers. Faults break one of those pieces each (the index is deleted, built
inverted, the gate or the citations are switched off).
"""

from __future__ import annotations

from typing import Any

from ...checks.ai.reference import INDEX_VERSION, build_index, gate, retrieve, terms

__all__ = ["INDEX_VERSION", "answer", "build_index", "gate", "retrieve", "terms"]


def answer(
    question: str, *, patterns: list[str], flags: dict[str, Any], index: dict[str, Any] | None
) -> tuple[int, dict[str, Any]]:
    if not question.strip():
        return 400, {"error": "empty question"}
    if not flags.get("focus_enabled", True):
        return 503, {"error": "Focus Mode is disabled by the operators", "citations": []}
    decision = gate(patterns, question, bool(flags.get("input_gate_enforced", True)))
    if decision["decision"] == "block":
        return 422, {
            "error": "question blocked by the input gate",
            "gate": decision,
            "citations": [],
        }
    if not index or index.get("version") != INDEX_VERSION:
        return 503, {"error": "retrieval index unavailable", "gate": decision, "citations": []}
    docs = retrieve(index, question)
    if not docs:
        return 200, {
            "answer": "No KFM dataset matches this question.",
            "gate": decision,
            "citations": [],
        }
    text = " ".join(f"{doc['title']}: {doc['text']}." for _, doc in docs)
    citations = [doc_id for doc_id, _ in docs] if flags.get("citations_required", True) else []
    if not citations and flags.get("block_uncited_answers", False):
        return 422, {
            "error": "answer withheld: no citations (policy)",
            "gate": decision,
            "citations": [],
        }
    return 200, {"answer": text, "gate": decision, "citations": citations}
