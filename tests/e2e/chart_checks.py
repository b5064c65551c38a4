"""What a person reads off a chart, measured in the browser: every ``<svg>``'s size and the boxes
of its labels and points (:data:`MEASURE`, for ``page.evaluate``), and what makes a label unreadable
(:func:`label_problems`)."""

from __future__ import annotations

from typing import Any

from ctloop.ui.chart_shapes import text_width

MEASURE = """() => [...document.querySelectorAll('svg')].map(svg => {
  const view = svg.viewBox.baseVal, rect = svg.getBoundingClientRect();
  const box = b => ({x0: b.x, y0: b.y, x1: b.x + b.width, y1: b.y + b.height});
  return {
    cls: svg.getAttribute('class'),
    view: {width: view.width, height: view.height},
    width: rect.width,
    container: svg.parentElement.clientWidth,
    texts: [...svg.querySelectorAll('text')].map(t => ({
      content: t.textContent, size: +t.getAttribute('font-size'), ...box(t.getBBox())})),
    dots: [...svg.querySelectorAll('circle')].map(c => box(c.getBBox())),
  };
})"""


def _intersect(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["x0"] < b["x1"] and b["x0"] < a["x1"] and a["y0"] < b["y1"] and b["y0"] < a["y1"]


def label_problems(svg: dict[str, Any]) -> list[str]:
    """Every label that is empty, outside its chart, wider than the layout estimated, or touching
    another label or a point."""
    found, texts = [], svg["texts"]
    for t in texts:
        width = t["x1"] - t["x0"]
        if width <= 0 or t["y1"] - t["y0"] <= 0:
            found.append(f"{t['content']!r} has no size")
        if t["x0"] < 0 or t["y0"] < 0 or t["x1"] > svg["view"]["width"] or t["y1"] > svg["view"]["height"]:
            found.append(f"{t['content']!r} is outside the chart: {t}")
        if width > text_width(t["content"], t["size"]):
            found.append(f"{t['content']!r} is wider ({width:.1f}) than the layout estimated")
        found += [f"{t['content']!r} covers a point" for dot in svg["dots"] if _intersect(t, dot)]
    for i, a in enumerate(texts):
        found += [f"{a['content']!r} overlaps {b['content']!r}" for b in texts[i + 1 :] if _intersect(a, b)]
    return found
