"""The timeline people read after a demo or a replay: one line per step, drift, quality, champion
and the decision with why."""

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


def format_timeline(rows: list[Row], quality_metric: str = "roc_auc") -> str:
    """The rows as aligned columns; ``quality_metric`` names the quality column."""
    if not rows:
        return "(stopped before its first step; see the error below)"
    header = ("step", "drift share", quality_metric, "champion")
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("step", "drift", "quality", "champion")]
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  decision"]
    for r in rows:
        cells = (r.step, r.drift, r.quality, r.champion)
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + f"  {r.decision}")
    return "\n".join(lines)
