"""What the pipeline page's charts draw, in user units of one SVG viewBox, and how wide a label
is. The charts (``chart``) place every label themselves, so they need each label's box to keep
labels off each other; ``ui/chart.html`` only turns these primitives into SVG elements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WIDTH, LEFT, RIGHT = 1200, 64, 128
"""The viewBox width and the margins: y ticks on the left, threshold labels on the right."""
FONT, SMALL = 12, 11
CHAR_EM = 0.66
"""A generous glyph width in ems: digits and lowercase of common sans fonts are 0.5-0.65 (DejaVu Sans
the widest), capitals up to 0.8 (WIDE_EM)."""
WIDE_EM = 0.9


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


def text_width(content: str, size: float) -> float:
    """An upper estimate of a label's width in user units (capitals and m, w are the wide glyphs)."""
    wide = sum(ch.isupper() or ch in "mwMW" for ch in content)
    return (len(content) * CHAR_EM + wide * (WIDE_EM - CHAR_EM)) * size


@dataclass(frozen=True)
class Text:
    x: float
    y: float  # the baseline
    content: str
    size: int = FONT
    anchor: str = "start"
    cls: str = ""

    @property
    def box(self) -> Box:
        """Where the label's glyphs may be drawn, ascent and descent included."""
        width = text_width(self.content, self.size)
        x0 = {"start": self.x, "middle": self.x - width / 2, "end": self.x - width}[self.anchor]
        return Box(x0, self.y - self.size, x0 + width, self.y + 0.3 * self.size)


@dataclass(frozen=True)
class Rule:
    x1: float
    y1: float
    x2: float
    y2: float
    cls: str


@dataclass(frozen=True)
class Band:
    x: float
    y: float
    width: float
    height: float
    cls: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str
    cls: str
    radius: float


@dataclass(frozen=True)
class Path:
    points: str
    cls: str


@dataclass(frozen=True)
class MarkerLine:
    """A retrain or champion move: a vertical line through the panels, its label if it fits, and a
    hover title that always says what it was."""

    kind: str
    title: str
    segments: list[tuple[float, float, float, float]]
    label: Text | None


@dataclass(frozen=True)
class Key:
    """One legend entry: how the swatch is drawn (``ct-line``, ``ct-dot``, ``ct-dash``, ``ct-band``)."""

    label: str
    cls: str
    shape: str


@dataclass
class Figure:
    """One chart: its caption, legend and notes (HTML) and what its SVG draws, in user units."""

    name: str
    title: str
    legend: list[Key]
    notes: list[str] = field(default_factory=list)
    height: float = 0.0  # 0: no SVG, the notes say why
    bands: list[Band] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    markers: list[MarkerLine] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    dots: list[Dot] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    svg_class: str = ""
    width: int = WIDTH

    def all_texts(self) -> list[Text]:
        """Every label the SVG draws, markers' included."""
        return self.texts + [m.label for m in self.markers if m.label is not None]


def round_coord(value: float) -> float:
    """To a tenth of a unit: finer is invisible and only makes the page longer."""
    return round(value, 1)
