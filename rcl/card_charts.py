"""Small self-contained SVG charts for the run card: error-tier bars and the (CER, F1) frontier.

No plotting library and no external asset: the card is one HTML file that prints as it shows.
Colours are the Okabe-Ito palette (colour-blind safe); every chart carries its own title, its
decision rule and how many cases or runs it rests on.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from rcl.text import pct, plural

TIER_COLOURS = {"correct": "#009E73", "visual_ambiguity": "#56B4E9", "type_1": "#E69F00", "type_2": "#D55E00"}
"""Okabe-Ito: correct, visual ambiguity, Type I, Type II (the app uses the same)."""


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(title)}' "
            f"font-family='system-ui,sans-serif' font-size='12'>"
            f"<title>{escape(title)}</title>{''.join(body)}</svg>")


def tier_bars_svg(rows: Sequence[dict], caption: str, width: int = 560) -> str:
    """Horizontal bars, one per error tier (``tier_totals`` rows: ``tier``, ``key``, ``count``),
    labels left of the bars and counts at their end, so no label sits under a legend."""
    total = sum(r["count"] for r in rows) or 1
    label_w, bar_h, top = 190, 22, 26
    scale = (width - label_w - 90) / max(max(r["count"] for r in rows), 1)
    body = [f"<text x='0' y='16' font-weight='600'>{escape(caption)}</text>"]
    for n, row in enumerate(rows):
        y = top + n * (bar_h + 8)
        w = row["count"] * scale
        body += [f"<text x='{label_w - 8}' y='{y + 15}' text-anchor='end'>{escape(row['tier'])}</text>",
                 f"<rect x='{label_w}' y='{y}' width='{w:.1f}' height='{bar_h}' "
                 f"fill='{TIER_COLOURS[row['key']]}'/>",
                 f"<text x='{label_w + w + 6:.1f}' y='{y + 15}'>{row['count']} "
                 f"({pct(row['count'] / total)})</text>"]
    return _svg(width, top + len(rows) * (bar_h + 8) + 4, body, caption)


def frontier_svg(points: Sequence[dict], highlight: str, caption: str, width: int = 560, height: int = 340) -> str:
    """The (CER, F1) plane of comparable runs (``comparable`` rows: ``id``, ``label``, ``cer``,
    ``f1_macro``, ``on_front``): the front as a step line, ``highlight`` (a run id) drawn large
    and named. Axes run over the data with a margin, so no point is clipped."""
    placed = [p for p in points if p.get("cer") is not None and p.get("f1_macro") is not None]
    left, right, top, bottom = 52, 16, 30, 40
    xs, ys = [p["cer"] for p in placed] or [0.0], [p["f1_macro"] for p in placed] or [0.0]
    x0, x1 = min(0.0, min(xs)), max(xs) + max(0.02, 0.08 * (max(xs) - min(xs)))
    y0, y1 = max(0.0, min(ys) - 0.05), min(1.0, max(ys) + 0.05)
    y1 = y1 if y1 > y0 else y0 + 0.1

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    body = [f"<text x='0' y='16' font-weight='600'>{escape(caption)}</text>",
            f"<line x1='{left}' y1='{height - bottom}' x2='{width - right}' y2='{height - bottom}' stroke='#888'/>",
            f"<line x1='{left}' y1='{top}' x2='{left}' y2='{height - bottom}' stroke='#888'/>",
            f"<text x='{(left + width - right) / 2}' y='{height - 6}' text-anchor='middle'>"
            "CER, malignant cases missed (lower is safer)</text>",
            f"<text x='12' y='{(top + height - bottom) / 2}' text-anchor='middle' "
            f"transform='rotate(-90 12 {(top + height - bottom) / 2})'>F1-macro (higher is better)</text>"]
    for i in range(5):
        x, y = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        body += [f"<text x='{px(x):.1f}' y='{height - bottom + 14}' text-anchor='middle' fill='#555'>"
                 f"{pct(x, 0)}</text>",
                 f"<text x='{left - 4}' y='{py(y) + 4:.1f}' text-anchor='end' fill='#555'>{y:.2f}</text>"]
    front = sorted((p for p in placed if p.get("on_front")), key=lambda p: p["cer"])
    if len(front) > 1:
        steps = [f"{px(front[0]['cer']):.1f},{py(front[0]['f1_macro']):.1f}"]
        for a, b in zip(front, front[1:]):
            steps += [f"{px(b['cer']):.1f},{py(a['f1_macro']):.1f}", f"{px(b['cer']):.1f},{py(b['f1_macro']):.1f}"]
        body.append(f"<polyline points='{' '.join(steps)}' fill='none' stroke='#000' stroke-dasharray='5,4'/>")
    for p in sorted(placed, key=lambda p: p["id"] == highlight):
        mine = p["id"] == highlight
        body.append(f"<circle cx='{px(p['cer']):.1f}' cy='{py(p['f1_macro']):.1f}' r='{7 if mine else 4}' "
                    f"fill='{'#D55E00' if mine else '#0072B2'}' stroke='white'><title>{escape(p['label'])}: CER "
                    f"{pct(p['cer'])}, F1 {p['f1_macro']:.3f}</title></circle>")
        if mine:
            anchor = "end" if px(p["cer"]) > width / 2 else "start"
            dx = -10 if anchor == "end" else 10
            body.append(f"<text x='{px(p['cer']) + dx:.1f}' y='{py(p['f1_macro']) - 8:.1f}' text-anchor='{anchor}' "
                        f"font-weight='600'>this run</text>")
    body.append(f"<text x='{width - right}' y='16' text-anchor='end' fill='#555'>{plural(len(placed), 'run')}</text>")
    return _svg(width, height, body, caption)


__all__ = ["TIER_COLOURS", "frontier_svg", "tier_bars_svg"]
