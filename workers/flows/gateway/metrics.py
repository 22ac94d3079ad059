"""Prometheus metrics of the gateway, served at /metrics."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

SUBSCRIBERS = Gauge("flows_gateway_subscribers", "Live subscriptions.", ["transport", "relation"], registry=REGISTRY)
CONNECTIONS = Gauge("flows_gateway_connections", "Open realtime connections.", ["transport"], registry=REGISTRY)
COMMITS = Counter("flows_gateway_commits_total", "Commits read from the change log.", registry=REGISTRY)
CHANGES = Counter("flows_gateway_changes_total", "Row changes read from the change log.", ["relation"],
                  registry=REGISTRY)
EVENTS = Counter("flows_gateway_events_total", "Changes delivered to subscribers (rate() gives events/s).",
                 ["relation"], registry=REGISTRY)
DELIVERY = Histogram("flows_gateway_delivery_seconds", "Commit to hand-over to the client's socket.",
                     buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30), registry=REGISTRY)
RESYNCS = Counter("flows_gateway_resyncs_total", "Subscriptions told to resync.", ["reason"], registry=REGISTRY)
QUEUE_DROPS = Counter("flows_gateway_queue_drops_total", "Messages dropped from slow clients' queues.",
                      registry=REGISTRY)
STEP = Histogram("flows_gateway_step_seconds", "One feed step: read changes, read rows as each audience, fan out.",
                 buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5), registry=REGISTRY)
AUDIENCE_READS = Counter("flows_gateway_audience_reads_total", "Row reads as one audience (role and claims).",
                         ["kind"], registry=REGISTRY)
FEED_RECONNECTS = Counter("flows_gateway_feed_reconnects_total", "Database reconnections of the feed.",
                          registry=REGISTRY)
POSITION = Gauge("flows_gateway_position", "Last change-log position the feed delivered.", registry=REGISTRY)
WEBHOOKS = Counter("flows_gateway_webhooks_total", "Processor webhook deliveries, by outcome (applied, duplicate, "
                   "stale, ignored, unmatched, conflict; bad_signature, refused, failed).", ["outcome"],
                   registry=REGISTRY)
WEBHOOK_SECONDS = Histogram("flows_gateway_webhook_seconds", "A webhook delivery, from its body read to the answer.",
                            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2), registry=REGISTRY)
