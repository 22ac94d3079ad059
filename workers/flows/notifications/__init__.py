"""Notifications: emails and texts to customers and to an ESCO's operators.

The rules are SQL (sql/schema/notifications/): they fill the outbox
(flows.notification_outbox) from what happened. This package delivers it, as
outbound jobs of ``flows worker`` (flows.worker.jobs):

- ``jobs.py``: the rules pass (``notification_rules``) and the senders
  (``email``, ``sms``): claim under a lease, render, deliver, record; retries
  with backoff and a dead letter after the last attempt.
- ``templates.py``: one template per message in templates/notifications
  (Jinja2: ``RULE.txt`` and ``RULE.html`` for email, ``RULE.sms.txt``).
- ``mail.py``: email over SMTP (aiosmtplib); ``sms.py``: texts through an HTTP
  gateway (Twilio's Messages API).
- ``catcher.py``: the mail catcher ``flows up`` runs (aiosmtpd, a real SMTP
  server) and ``flows mail list | show``; ``sms_test_gateway.py``: a local
  stand-in speaking Twilio's wire format, for tests and the embedded stack.
- ``queries.py``: the SQL functions the jobs call, and nothing else touches
  the database.

docs/notifications.md says what is sent when, and the one window in which a
message can be delivered twice.
"""
