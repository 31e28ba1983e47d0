"""Small text helpers shared by the report modules (report.py, tunnel_report.py)."""

from __future__ import annotations

from collections.abc import Sequence


def table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def ratio_text(ratio: float, limit: float | None = None) -> str:
    """``0.64x``; with a third decimal where two would print the target's own value (``0.601x`` against 0.6)."""
    text = f"{ratio:.2f}"
    if limit is not None and text == f"{limit:.2f}" and ratio != limit:
        text = f"{ratio:.3f}"
    return text + "x"
