"""Small line charts as inline SVG, drawn on the server: no script, no external network."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

WIDTH, HEIGHT = 640, 180
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 70, 16, 28, 28


def _fmt(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 1_000:
        return f"{value / 1_000:.0f}k"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def line_chart(points: Sequence[tuple[date, float]], *, title: str, color: str = "#447e9b") -> SafeString:
    """One series over days: axes, min/max labels, first and last date, a dot per day with a tooltip."""
    if not points:
        return format_html('<p class="help">{}</p>', gettext("%(chart)s: no data yet.") % {"chart": title})
    values = [float(v) for _, v in points]
    low, high = min(0.0, min(values)), max(values)
    span = (high - low) or 1.0
    inner_w, inner_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    step = inner_w / max(len(points) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return PAD_LEFT + i * step, PAD_TOP + inner_h - (v - low) / span * inner_h

    coords = [xy(i, v) for i, v in enumerate(values)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{escape(color)}"><title>{d:%d-%m-%Y}: '
        f"{escape(_fmt(v))}</title></circle>"
        for (x, y), (d, v) in zip(coords, points, strict=True))
    base_y = PAD_TOP + inner_h
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ads-chart" role="img" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" aria-label="{escape(title)}">'
        f'<text x="{PAD_LEFT}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>'
        f'<line x1="{PAD_LEFT}" y1="{base_y}" x2="{WIDTH - PAD_RIGHT}" y2="{base_y}" stroke="#999"/>'
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{base_y}" stroke="#999"/>'
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 4}" font-size="11" text-anchor="end">{escape(_fmt(high))}</text>'
        f'<text x="{PAD_LEFT - 6}" y="{base_y}" font-size="11" text-anchor="end">{escape(_fmt(low))}</text>'
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 8}" font-size="11">{points[0][0]:%d-%m}</text>'
        f'<text x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 8}" font-size="11" text-anchor="end">{points[-1][0]:%d-%m}</text>'
        f'<polyline fill="none" stroke="{escape(color)}" stroke-width="2" points="{path}"/>{dots}</svg>'
    )
    return mark_safe(svg)  # noqa: S308 - every interpolated text above is escaped; numbers are formatted


def shop_charts(shop, days: int = 30) -> list[SafeString]:
    """Daily spend, GMV and ROAS of the shop's last ``days`` days of results."""
    rows = list(shop.daily.order_by("-date").values_list("date", "spend", "broad_gmv", "roas")[:days])[::-1]
    return [
        line_chart([(d, float(s)) for d, s, _, _ in rows], title=gettext("Daily spend (₫)"), color="#c0392b"),
        line_chart([(d, float(g)) for d, _, g, _ in rows], title=gettext("Daily GMV (₫)"), color="#27ae60"),
        line_chart([(d, float(r)) for d, _, _, r in rows], title=gettext("ROAS (GMV / spend)"), color="#2c3e50"),
    ]
