"""The 12-month consumption chart of a statement, as inline SVG (WeasyPrint draws SVG natively)."""

from decimal import Decimal
from html import escape

WIDTH, HEIGHT = 520, 150
LEFT, BOTTOM, TOP = 44, 22, 12
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def _nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 5 x 10^n at or above value (a round top for the axis)."""
    if value <= 0:
        return Decimal(10)
    step = Decimal(1)
    while step * 10 <= value:
        step *= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= value:
            return step * factor
    return step * 10


def consumption_svg(months: list[dict], highlight: str) -> str:
    """Bars of kWh per month (``[{"month": "2026-10-01", "kwh": 123.4}, ...]``), the statement's month highlighted."""
    top = _nice_ceiling(max((Decimal(str(m["kwh"])) for m in months), default=Decimal(0)))
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(len(months), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="kWh per month, last 12 months">']
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - 8}" y2="{y:.1f}" stroke="#cfd8dc" '
                     'stroke-width="0.6"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{y + 3:.1f}" font-size="8" text-anchor="end" fill="#546e7a">'
                     f'{top * Decimal(str(fraction)):.0f}</text>')
    for i, month in enumerate(months):
        kwh = Decimal(str(month["kwh"]))
        h = float(kwh / top) * plot_h if top else 0
        x = LEFT + i * slot + slot * 0.15
        colour = "#2e7d32" if month["month"] == highlight else "#90a4ae"
        parts.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                     f'fill="{colour}"><title>{escape(month["month"])}: {kwh} kWh</title></rect>')
        label = MONTHS[int(month["month"][5:7]) - 1]
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - 8}" font-size="8" text-anchor="middle" '
                     f'fill="#37474f">{label}</text>')
    parts.append(f'<text x="4" y="{TOP + 2}" font-size="8" fill="#546e7a">kWh</text></svg>')
    return "".join(parts)
