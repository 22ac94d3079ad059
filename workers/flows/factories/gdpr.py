"""Personal data: customers' consents and erasures (the gdpr schema), through the api functions
operators call, and a prospective customer (invited, never moved in) to erase."""

import uuid

import psycopg


def add_customer(conn: psycopg.Connection, esco_id: str, fullname: str, email: str | None = None,
                 phone: str | None = None) -> str:
    """A customer invited to ESCO ``esco_id`` who has no account yet (as an operator's POST /customers makes one);
    keyed on (ESCO, email): the same email again changes nothing. Returns the id."""
    email = email or f"{uuid.uuid4().hex[:10]}@customers.example"
    conn.execute("INSERT INTO api.customers (esco, fullname, email, phone) VALUES (%s, %s, %s, %s)"
                 " ON CONFLICT DO NOTHING", (esco_id, fullname, email, phone))
    row = conn.execute("SELECT id FROM billing.customers WHERE esco = %s AND email = %s", (esco_id, email)).fetchone()
    return str(row[0])


def record_consent(conn: psycopg.Connection, customer: str, given: bool = True,
                   purpose: str = "half_hourly_data") -> str:
    """Gives (or withdraws) a customer's consent as an operator records it (api.record_consent); recording what is
    in force already changes nothing. Returns the id of the consent in force."""
    row = conn.execute("SELECT id FROM api.record_consent(%s, %s, %s)", (given, purpose, customer)).fetchone()
    return str(row[0])


def erase_customer(conn: psycopg.Connection, customer: str, reference: str | None = None) -> str:
    """Erases a customer (api.erase_customer; they must owe nothing and be supplied no more); erasing them again
    changes nothing. Returns the id of the erasure."""
    conn.execute("SELECT api.erase_customer(%s, %s)", (customer, reference))
    return str(conn.execute("SELECT id FROM api.erasures WHERE customer_id = %s", (customer,)).fetchone()[0])
