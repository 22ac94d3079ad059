"""A statement document (``api.statement_document``) rendered to PDF from one HTML template.

WeasyPrint renders HTML/CSS (paged media: A4, page numbers in the margin) and
SVG, so the layout lives in a template a person can edit
(templates/statement.html) and the chart is plain SVG; it is a maintained,
pure-Python library (with Pango for text) available from PyPI and Debian.
Jinja2 fills the template with autoescaping, so a customer's name cannot
inject markup.
"""

from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from flows.billing.chart import consumption_svg

UK = ZoneInfo("Europe/London")
TEMPLATES = Path(__file__).parent / "templates"
RENDERER = "weasyprint"


def _d(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def gbp(value) -> str:
    amount = _d(value)
    if amount is None:
        return "-"
    sign = "-" if amount < 0 else ""
    return f"{sign}£{abs(amount):,.2f}"


def pence(value) -> str:
    """A rate in GBP as pence with 3 decimals (24.567p)."""
    rate = _d(value)
    return "-" if rate is None else f"{rate * 100:.3f}p"


def kwh(value) -> str:
    amount = _d(value)
    return "-" if amount is None else f"{amount:,.1f}"


def read(value) -> str:
    amount = _d(value)
    return "not read" if amount is None else f"{amount:,.3f}"


def when(value: str) -> str:
    """A UTC instant as UK local time; midnights as the date alone."""
    moment = datetime.fromisoformat(value).astimezone(UK)
    return f"{moment:%d %b %Y}" if (moment.hour, moment.minute) == (0, 0) else f"{moment:%d %b %Y %H:%M}"


def quantity(line: dict) -> str:
    amount = _d(line["quantity"])
    return f"{amount:,.3f} kWh" if line["unit"] == "kWh" else f"{amount:,.5f} days"


def rate(line: dict) -> str:
    return pence(line["rate"]) + ("/kWh" if line["unit"] == "kWh" else "/day")


def percent(value) -> str:
    return f"{(_d(value) * 100).normalize():f}%"


@cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    return environment.get_template("statement.html")


def meter_notes(doc: dict) -> list[str]:
    """Where the meter charged another rate than the customer's tariff, say so."""
    notes = []
    for line in doc["lines"]:
        meter, billed = _d(line.get("meter_rate")), _d(line["rate"])
        if meter is not None and meter != billed:
            unit = "kWh" if line["unit"] == "kWh" else "day"
            notes.append(f"{line['description']}, {when(line['period_from'])} to {when(line['period_to'])}: your "
                         f"meter charged {pence(meter)}/{unit}; this statement uses your tariff, {pence(billed)}/"
                         f"{unit} (a difference of {gbp(line['meter_difference'])} including VAT).")
    return notes


def html(doc: dict) -> str:
    period_end = datetime.fromisoformat(doc["period_to"]).astimezone(UK)
    # a period ending at midnight ends with the day before
    last = (f"{period_end - timedelta(days=1):%d %b %Y}" if (period_end.hour, period_end.minute) == (0, 0)
            else f"{period_end:%d %b %Y %H:%M}")
    tariffs = sorted(doc["details"].get("tariffs") or [], key=lambda t: t["effective_from"])
    at_cap = sum((_d(line["quantity"]) * _d(next((t["cap_unit_rate"] if line["unit"] == "kWh" else
                                                  t["cap_standing_charge"]) for t in tariffs
                                                 if t["customer_tariff_id"] == line["customer_tariff_id"]))
                  for line in doc["lines"]), Decimal(0))
    return _template().render(
        doc=doc,
        title="Credit note" if doc["kind"] == "credit_note" else "Electricity statement",
        issued=when(doc["issued_at"]) if doc.get("issued_at") else "draft",
        period=f"{when(doc['period_from'])} to {last}",
        tariffs=tariffs,
        at_cap=at_cap.quantize(Decimal("0.01")),
        meter_notes=meter_notes(doc),
        chart=consumption_svg(doc["details"].get("usage_12_months") or [], doc["period_start"]),
        gbp=gbp, pence=pence, kwh=kwh, read=read, when=when, quantity=quantity, rate=rate, percent=percent,
    )


def render_pdf(doc: dict) -> bytes:
    import weasyprint  # imported here: loading Pango takes a moment and only rendering needs it

    return weasyprint.HTML(string=html(doc), base_url=str(TEMPLATES)).write_pdf()
