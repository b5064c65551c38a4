"""The timeline people read after a demo or a replay: one line per step, drift, quality, champion
and the decision with why; with a served column when some step has one (a batch's served metric,
from its own labels)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    """One line of the timeline."""

    step: str
    drift: str = ""
    quality: str = ""
    decision: str = ""
    champion: str = ""
    served: str = ""


def format_timeline(rows: list[Row], quality_metric: str = "roc_auc", served_metric: str = "accuracy") -> str:
    """The rows as aligned columns; ``quality_metric`` names the quality column, ``served_metric``
    the served column, shown only when a row has a value in it."""
    if not rows:
        return "(stopped before its first step; see the error below)"
    fields = ["step", "drift", "quality", "champion"]
    header = ["step", "drift share", quality_metric, "champion"]
    if any(r.served for r in rows):
        fields.insert(3, "served")
        header.insert(3, f"served {served_metric}")
    widths = [max(len(getattr(r, f)) for r in rows) for f in fields]
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  decision"]
    for r in rows:
        cells = [getattr(r, f) for f in fields]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + f"  {r.decision}")
    return "\n".join(lines)
