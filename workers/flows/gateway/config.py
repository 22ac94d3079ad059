"""What a gateway runs with (``flows gateway`` options)."""

from dataclasses import dataclass


@dataclass
class GatewayConfig:
    database_url: str  # logs in as flows_authenticator, like PostgREST
    jwt_secret: str
    host: str = "127.0.0.1"
    port: int = 8090
    queue_limit: int = 500  # messages waiting per connection before it is told to resync
    snapshot_limit: int = 5000  # rows a subscription may ask for as its first state
    max_catchup: int = 50_000  # commits a resuming client may be behind before it must resync
    retention_seconds: float = 3600.0  # changes kept for resuming clients
    prune_interval: float = 300.0  # seconds between prunes (0: never; pg_cron may do it instead)
    poll_interval: float = 1.0  # seconds between feed steps without a doorbell (keeps the held snapshot fresh)
    batch_window: float = 0.02  # seconds a doorbell waits for others, to batch them into one step
    # Least seconds between step starts: under a stream of commits, the read each audience costs per step
    # (operators' dashboards) is shared by more changes; a commit after a quiet spell is not held up.
    step_interval: float = 0.1
    heartbeat_interval: float = 15.0  # seconds between keepalives on idle streams
    auth_timeout: float = 10.0  # seconds a WebSocket has to send its token
    stripe_webhook_secret: str | None = None  # POST /webhooks/stripe checks signatures with it (None: 503)
    webhook_tolerance: int = 300  # seconds a webhook's signed timestamp may be off (Stripe's default)
