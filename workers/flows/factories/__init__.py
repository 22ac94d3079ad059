"""Factories: the rows Flows stores, made the way the product makes them.

One set, composed by the demo community (flows.stack.demo), the tests
(tests/support/factory.py builds each tenancy test's sample ESCO from them;
fixtures in tests/ call them directly) and the benchmarks (bench/). Rules:

- Built on the product's own SQL functions where one exists
  (api.register_meter, flows.record_meter_states, flows.record_interval_hh,
  api.send_token ...), so a factory's rows are exactly what production makes;
  plain INSERTs into flows tables only where no function writes them (topology).
- First argument a psycopg connection that may write every ESCO (a superuser
  or flows_admin; no JWT claims), then the parent the row hangs off (ESCO id,
  site, meter ...). Children take their ESCO from their parent.
- Return ids as text, or a small frozen dataclass (Esco, Meter) when callers
  need more than the id.
- Keyed on the natural key (ESCO code, site code, plot, serial ...): called
  again with the same key they change nothing, so the demo can be created
  twice. Keys default to fresh unique values (new_esco_code, new_serial), so
  tests never collide.
- One module per concern (topology, meters, readings, commands, access,
  customers, tariffs, statements, payments), with add_<thing> / record_<thing>
  functions, exported here. docs/database.md ("Test data") says how to add one.
"""

from flows.factories.access import add_api_key
from flows.factories.bank import add_bank_account, import_statement, statement
from flows.factories.commands import fail_command, finish_command, request_sync, send_token, set_future_tariff
from flows.factories.customers import (
    Onboarded,
    add_contract,
    move_in,
    move_out,
    onboard_customer,
    onboard_customers,
    set_customer_status,
)
from flows.factories.gdpr import add_customer, erase_customer, record_consent
from flows.factories.history import profile_history, record_profile_history
from flows.factories.meters import Meter, MeterSpec, add_emulated_meters, add_meter, add_meters, new_serial
from flows.factories.notifications import (
    dead_letter,
    queue_notifications,
    set_notification_preferences,
    set_notification_settings,
)
from flows.factories.payments import (
    add_adjustment,
    add_payment_method,
    add_solar_installation,
    add_solar_rate,
    allocate_solar,
    apply_processor_event,
    create_gift,
    generate_solar_credits,
    record_payment,
    refund_payment,
    run_money_pass,
    schedule_payment,
    set_wallet,
)
from flows.factories.readings import record_events, record_half_hours, record_states
from flows.factories.statements import (
    bill_month,
    create_billing_run,
    credit_invoice,
    finalise_billing_run,
    set_esco_billing,
)
from flows.factories.tariffs import (
    add_microgrid_tariff,
    add_price_cap,
    generate_customer_tariffs,
    roll_out_customer_tariffs,
    set_customer_discount,
)
from flows.factories.topology import (
    Esco,
    add_circuit,
    add_esco,
    add_feeder,
    add_property,
    add_service_head,
    add_site,
    link_circuit_register,
    link_head_meter,
    link_property_head,
    new_esco_code,
)
from flows.factories.workers import add_worker

__all__ = [
    "Esco", "Meter", "MeterSpec", "Onboarded", "add_adjustment", "add_api_key", "add_bank_account", "add_circuit",
    "add_contract", "add_customer", "add_emulated_meters", "add_esco", "add_feeder", "add_meter", "add_meters",
    "add_microgrid_tariff", "add_payment_method", "add_price_cap", "add_property", "add_service_head", "add_site",
    "add_solar_installation", "add_solar_rate", "add_worker", "allocate_solar", "apply_processor_event", "bill_month",
    "create_billing_run", "create_gift", "credit_invoice", "dead_letter", "erase_customer", "fail_command",
    "finalise_billing_run", "finish_command", "generate_customer_tariffs", "generate_solar_credits",
    "import_statement", "link_circuit_register", "link_head_meter", "link_property_head", "move_in", "move_out",
    "new_esco_code", "new_serial", "onboard_customer", "onboard_customers", "profile_history", "queue_notifications",
    "record_consent", "record_events", "record_half_hours", "record_payment", "record_profile_history",
    "record_states", "refund_payment", "request_sync", "roll_out_customer_tariffs", "run_money_pass",
    "schedule_payment", "send_token", "set_customer_discount", "set_customer_status", "set_esco_billing",
    "set_future_tariff", "set_notification_preferences", "set_notification_settings", "set_wallet", "statement",
]
