"""AI / Focus Mode checks: citations, retrieval, the input gate, evaluation drift."""
