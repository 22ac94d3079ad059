"""The demo community's money side: customers, tariffs and last month's statements.

- Customers: an owner-occupier in most homes; Meadow Lettings (a landlord) owns
  DM-05 and DM-06, let to tenants; the DM-06 tenant moved out mid-month last
  month and the next one moved in a few days later (the landlord pays the
  days between); the community hall is a business customer.
- Tariffs: the south-west price cap for last month's, this and next quarter
  (demo figures), the ESCO's 25% discount, one customer's discount changed
  mid-month; this quarter's rates rolled out to the meters.
- Statements: last month's, issued (numbered) and rendered to PDF.

Last month's half hours: the emulated meters keep a week of profile log, so
the demo records last month from the same deterministic load model the
emulator uses for each meter (flows.emulator.load.LoadProfile, seeded by the
serial), through flows.record_interval_hh as source profile_log, as if the
meters' logs had been read. Everything is made through the product's RPCs and
is skipped when already there.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import structlog

from flows.billing.documents import render_pending
from flows.db.connect import connect
from flows.emop.units import EPOCH_2000_UNIX
from flows.emulator.config import MeterConfig
from flows.emulator.load import HALF_HOUR, LoadProfile

log = structlog.get_logger(__name__)

ESCO_CODE = "DEMO"
REGION = "south_west"
# (unit rate GBP/kWh, standing charge GBP/day), incl. VAT, by quarter offset from the current one
CAPS = {-1: (Decimal("0.25730"), Decimal("0.51510")), 0: (Decimal("0.26240"), Decimal("0.53450")),
        1: (Decimal("0.27030"), Decimal("0.54850"))}
LANDLORD = "Meadow Lettings Ltd"
OWNERS = ["Amira Shah", "Ben Carter", "Chloe Evans", "Dev Patel", None, None, "Grace Hughes", "Harry Wood",
          "Isla Morgan", "Jack Lewis", "Kiran Roberts", "Lily Walker", "Mason Hall", "Nora Green", "Oscar King",
          "Priya Turner", "Quinn Baker", "Rosa Wright", "Sam Cooper"]
TENANTS = {"DM-05": "Erin Price", "DM-06": "Felix Moore"}
NEXT_TENANT = "Gina Ford"
HALL = "Meadows Community Association"


def quarter_start(day: date, offset: int = 0) -> date:
    month = (day.month - 1) // 3 * 3 + 3 * offset
    return date(day.year + month // 12, month % 12 + 1, 1)


def last_month(today: date) -> date:
    return date(today.year - 1, 12, 1) if today.month == 1 else date(today.year, today.month - 1, 1)


def create(database_url: str, today: date | None = None) -> None:
    today = today or datetime.now(UTC).date()
    month = last_month(today)
    with connect(database_url, autocommit=True) as conn:
        esco = conn.execute("SELECT id FROM flows.escos WHERE code = %s", (ESCO_CODE,)).fetchone()[0]
        with conn.transaction():
            _tariffs(conn, esco, today, month)
            if not conn.execute("SELECT EXISTS (SELECT FROM billing.customers WHERE esco = %s)", (esco,)).fetchone()[0]:
                _customers(conn, month)
                _record_last_month(conn, esco, month)
                for quarter in sorted({quarter_start(month), quarter_start(today), quarter_start(today, 1)}):
                    conn.execute("SELECT api.generate_customer_tariffs(%s, %s)", (ESCO_CODE, quarter))
                changed = conn.execute("SELECT c.id FROM billing.customers c WHERE c.esco = %s AND c.fullname = %s",
                                       (esco, OWNERS[2])).fetchone()[0]
                conn.execute("SELECT api.set_customer_discount(%s, 30, %s)",
                             (changed, _at(month, 10, 7)))
            if not conn.execute("SELECT EXISTS (SELECT FROM billing.billing_runs WHERE esco = %s AND period_start = %s"
                                " AND status = 'final')", (esco, month)).fetchone()[0]:
                run = conn.execute("SELECT id FROM api.create_billing_run(%s, %s)", (ESCO_CODE, month)).fetchone()[0]
                conn.execute("SELECT api.finalise_billing_run(%s)", (run,))
        rendered = render_pending(conn)
        log.debug("demo billing ready", month=str(month), statements_rendered=len(rendered))


def _at(month: date, day: int, hour: int) -> datetime:
    return datetime(month.year, month.month, day, hour, tzinfo=UTC)


def _tariffs(conn: psycopg.Connection, esco, today: date, month: date) -> None:
    for offset, (unit, standing) in CAPS.items():
        conn.execute("INSERT INTO billing.benchmark_tariffs (region, period_start, unit_rate, standing_charge)"
                     " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                     (REGION, quarter_start(today, offset), unit, standing))
    conn.execute("INSERT INTO billing.microgrid_tariffs (esco, period_start, region, discount) VALUES (%s, %s, %s, 25)"
                 " ON CONFLICT (esco, period_start) DO NOTHING", (esco, quarter_start(month), REGION))
    conn.execute("INSERT INTO billing.esco_billing (esco, legal_name, address, email, phone, website, vat_number)"
                 " VALUES (%s, 'Demo Community Energy CIC', 'The Hall, Demo Meadows, Somerset TA1 1AA',"
                 " 'billing@demo-energy.example', '01823 000000', 'demo-energy.example', 'GB123456789')"
                 " ON CONFLICT (esco) DO UPDATE SET legal_name = excluded.legal_name, address = excluded.address,"
                 " email = excluded.email, phone = excluded.phone, website = excluded.website,"
                 " vat_number = excluded.vat_number", (esco,))


def _customers(conn: psycopg.Connection, month: date) -> None:
    """Everyone moved in before last month; the DM-06 tenant changes mid-month."""
    moved_in = datetime.combine(month - timedelta(days=31), datetime.min.time(), tzinfo=UTC)
    homes = dict(conn.execute("SELECT p.plot, p.id FROM flows.properties p JOIN flows.escos e ON e.id = p.esco"
                              " WHERE e.code = %s", (ESCO_CODE,)).fetchall())
    landlord = None
    for i, owner in enumerate(OWNERS):
        plot = f"DM-{i + 1:02d}"
        if owner:
            _onboard(conn, homes[plot], owner, "owner_occupier", moved_in)
            continue
        landlord = _onboard(conn, homes[plot], LANDLORD, "owner", moved_in, customer=landlord)
        _onboard(conn, homes[plot], TENANTS[plot], "occupier", moved_in)
        if plot == "DM-06":
            account = conn.execute("SELECT id FROM billing.accounts WHERE property = %s", (homes[plot],)).fetchone()[0]
            conn.execute("SELECT api.move_out(%s, %s)", (account, _at(month, 14, 10)))
            _onboard(conn, homes[plot], NEXT_TENANT, "occupier", _at(month, 20, 0))
    _onboard(conn, homes["Hall"], HALL, "owner_occupier", moved_in)
    # onboarded: details confirmed, paying by Direct Debit, contract signed -> live
    conn.execute("UPDATE billing.customers c SET status = 'onboarding', details_confirmed_at = %s,"
                 " payment_method = 'direct_debit' FROM flows.escos e WHERE e.id = c.esco AND e.code = %s",
                 (moved_in, ESCO_CODE))
    conn.execute("INSERT INTO billing.contracts (esco, customer_id, type, terms_version, signed_at, effective_date)"
                 " SELECT c.esco, c.id, 'supply', '2026.1', %s, %s FROM billing.customers c JOIN flows.escos e"
                 " ON e.id = c.esco WHERE e.code = %s", (moved_in, moved_in.date(), ESCO_CODE))
    conn.execute("UPDATE billing.customers c SET status = 'live' FROM flows.escos e WHERE e.id = c.esco"
                 " AND e.code = %s", (ESCO_CODE,))


def _onboard(conn, prop, name: str, role: str, at: datetime, customer: str | None = None) -> str:
    email = name.lower().replace(" ", ".").replace(".ltd", "") + "@mail.example"
    made = conn.execute("SELECT api.onboard_customer(%s, %s, %s, role => %s, move_in => %s, customer_id => %s)",
                        (prop, name, None if customer else email, role, at, customer)).fetchone()[0]
    return made["customer"]["id"]


def _record_last_month(conn: psycopg.Connection, esco, month: date) -> None:
    """Last month's half hours of every demo meter from the emulator's load model."""
    from flows.stack.demo import fleet_meters

    start = datetime.combine(month, datetime.min.time(), tzinfo=UTC) - timedelta(days=1)
    end = datetime.combine(month + timedelta(days=32), datetime.min.time(), tzinfo=UTC)
    ids, times, imports, exports = [], [], [], []
    for entry in fleet_meters():
        config = MeterConfig(**{k: v for k, v in entry.items() if k not in ("port", "history_days", "balance")})
        profile = LoadProfile(config.seed, config.load_scale, config.solar_kw, twin=config.kind == "twin")
        registers = dict(conn.execute(
            "SELECT r.element, r.register_id FROM flows.meter_registers r JOIN flows.meter_registry m"
            " ON m.id = r.meter_id WHERE m.serial = %s AND r.status = 'enabled'", (entry["serial"],)).fetchall())
        moment = start
        while moment < end:
            a, b = profile.half_hour(int((moment.timestamp() - EPOCH_2000_UNIX) // HALF_HOUR))
            for element, register in registers.items():
                used = b if element == "B" else a
                ids.append(register)
                times.append(moment)
                imports.append(Decimal(used[0]) / 1_000_000)
                exports.append(Decimal(used[1]) / 1_000_000)
            moment += timedelta(seconds=HALF_HOUR)
    conn.execute("SELECT flows.record_interval_hh(%s::uuid[], %s::timestamptz[], %s::numeric[], %s::numeric[],"
                 " 'profile_log')", (ids, times, imports, exports))
