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
- One module per concern; a new concern (customers, accounts, tariffs,
  payments ...) is a new module with add_<thing> / record_<thing> functions,
  exported here. docs/database.md ("Test data") says how to add one.
"""

from flows.factories.access import add_api_key
from flows.factories.commands import request_sync, send_token, set_future_tariff
from flows.factories.gdpr import add_customer, erase_customer, record_consent
from flows.factories.meters import Meter, MeterSpec, add_emulated_meters, add_meter, add_meters, new_serial
from flows.factories.readings import record_events, record_half_hours, record_states
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

__all__ = [
    "Esco", "Meter", "MeterSpec", "add_api_key", "add_circuit", "add_customer", "add_emulated_meters", "add_esco",
    "add_feeder", "add_meter", "add_meters", "add_property", "add_service_head", "add_site", "erase_customer",
    "link_circuit_register", "link_head_meter", "link_property_head", "new_esco_code", "new_serial",
    "record_consent", "record_events", "record_half_hours", "record_states", "request_sync", "send_token",
    "set_future_tariff",
]
