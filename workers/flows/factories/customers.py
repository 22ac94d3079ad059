"""Customers of a property, onboarded the way operators do it (api.onboard_customer)."""

import psycopg


def onboard_customer(conn: psycopg.Connection, property_id: str, fullname: str, email: str | None = None,
                     phone: str | None = None, *, role: str = "owner_occupier") -> str:
    """A customer of ``property_id`` (invited; the property's supply account on its meter, and the links);
    their id. Keyed on the email within the property's ESCO: called again, it returns the same customer."""
    if email is not None and (found := conn.execute(
            "SELECT c.id FROM billing.customers AS c JOIN flows.properties AS p ON p.esco = c.esco"
            " WHERE p.id = %s AND c.email = %s", (property_id, email)).fetchone()):
        return str(found[0])
    made = conn.execute("SELECT api.onboard_customer(%s, %s, %s, %s, %s)",
                        (property_id, fullname, email, phone, role)).fetchone()[0]
    return made["customer"]["id"]
