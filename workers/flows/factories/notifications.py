"""Notifications: an ESCO's settings, a customer's preferences, the rules run
(what they queue) and a dead letter, through the product's own functions."""

from collections.abc import Sequence

import psycopg


def set_notification_settings(conn: psycopg.Connection, esco_id: str, *, operator_emails: Sequence[str] | None = None,
                              operator_phones: Sequence[str] | None = None, offline_hours: int | None = None,
                              sms_quiet_hours: tuple[str, str] | None = None) -> None:
    """Changes an ESCO's notification settings (its row exists from the ESCO's creation); None keeps a setting."""
    quiet_from, quiet_to = sms_quiet_hours or (None, None)
    conn.execute(
        "UPDATE flows.notification_settings SET operator_emails = coalesce(%s, operator_emails),"
        " operator_phones = coalesce(%s, operator_phones), offline_hours = coalesce(%s, offline_hours),"
        " sms_quiet_from = coalesce(%s, sms_quiet_from), sms_quiet_to = coalesce(%s, sms_quiet_to) WHERE esco = %s",
        (None if operator_emails is None else list(operator_emails),
         None if operator_phones is None else list(operator_phones), offline_hours, quiet_from, quiet_to, esco_id))


def set_notification_preferences(conn: psycopg.Connection, customer_id: str, channels: Sequence[str] = ("email",),
                                 opted_out: Sequence[str] = (), sms_quiet_hours: tuple[str, str] | None = None) -> str:
    """A customer's preferences (made or replaced); the customer's id."""
    quiet_from, quiet_to = sms_quiet_hours or (None, None)
    conn.execute(
        "INSERT INTO flows.notification_preferences (customer_id, esco, channels, opted_out, sms_quiet_from,"
        " sms_quiet_to) SELECT c.id, c.esco, %s, %s, %s, %s FROM billing.customers AS c WHERE c.id = %s"
        " ON CONFLICT (customer_id, esco) DO UPDATE SET channels = excluded.channels,"
        " opted_out = excluded.opted_out, sms_quiet_from = excluded.sms_quiet_from,"
        " sms_quiet_to = excluded.sms_quiet_to",
        (list(channels), list(opted_out), quiet_from, quiet_to, customer_id))
    return customer_id


def queue_notifications(conn: psycopg.Connection) -> dict[str, int]:
    """One pass of every rule (flows.run_notification_rules_v1, as the worker runs it): messages queued per
    rule. A rule that fails raises."""
    runs = conn.execute("SELECT rule, queued, error FROM flows.run_notification_rules_v1()").fetchall()
    if failed := [f"{rule}: {error}" for rule, _, error in runs if error]:
        raise RuntimeError(f"notification rules failed: {'; '.join(failed)}")
    return {rule: queued for rule, queued, _ in runs}


def dead_letter(conn: psycopg.Connection, notification_id: str, error: str = "550 5.1.1 mailbox unavailable") -> str:
    """Makes a queued message a dead letter as a sender would on a refusal: claims its channel's due messages,
    records the refusal for this one and hands the others back. Its id."""
    channel = conn.execute("SELECT channel FROM flows.notification_outbox WHERE id = %s",
                           (notification_id,)).fetchone()[0]
    held = conn.execute("SELECT id, attempt FROM flows.claim_notifications_v1(%s, 'factory', 10000)",
                        (channel,)).fetchall()
    others = [(i, a) for i, a in held if str(i) != notification_id]
    if len(others) == len(held):
        conn.execute("SELECT flows.release_notifications_v1('factory', %s, %s)",
                     ([i for i, _ in others], [a for _, a in others]))
        raise ValueError(f"notification {notification_id} is not due to be sent")
    attempt = next(a for i, a in held if str(i) == notification_id)
    conn.execute("SELECT flows.record_notification_failed_v1(%s, 'factory', %s, %s, true)",
                 (notification_id, attempt, error))
    conn.execute("SELECT flows.release_notifications_v1('factory', %s, %s)",
                 ([i for i, _ in others], [a for _, a in others]))
    return notification_id
