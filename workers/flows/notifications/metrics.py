"""Prometheus metrics of the notification jobs, served with the worker's (flows worker --metrics-port).
The backlog as the database sees it (all senders) is the exporter's flows_notifications_* gauges."""

from prometheus_client import Counter, Gauge, Histogram

CHANNELS = ("email", "sms")

SENT = Counter("flows_notifications_sent_total", "Messages delivered to the provider, by channel and rule.",
               ["channel", "rule"])
FAILED = Counter("flows_notifications_failed_total", "Failed deliveries, by channel and outcome (retry: pending "
                 "again after the backoff; dead: the dead letter; fenced: sent, but another sender held it).",
                 ["channel", "outcome"])
QUEUE_AGE = Histogram("flows_notifications_queue_age_seconds", "How long a due message waited for a sender "
                      "(from send_after until its send began).", ["channel"],
                      buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600))
SEND_SECONDS = Histogram("flows_notifications_send_seconds", "Render and deliver one message.", ["channel"],
                         buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30))
RECORD_WINDOW = Histogram("flows_notifications_record_window_seconds", "From the provider's acceptance to the "
                          "record committed: the window in which a crash sends a message twice.", ["channel"],
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5))
IN_FLIGHT = Gauge("flows_notifications_in_flight", "Messages this worker is sending.", ["channel"])
QUEUED = Counter("flows_notifications_queued_total", "Messages the rules queued, by rule.", ["rule"])
RULE_ERRORS = Counter("flows_notifications_rule_errors_total", "Rule passes that failed, by rule.", ["rule"])

for _channel in CHANNELS:  # present in the first scrape, before anything is sent
    FAILED.labels(_channel, "retry")
    FAILED.labels(_channel, "dead")
    IN_FLIGHT.labels(_channel)
    QUEUE_AGE.labels(_channel)
