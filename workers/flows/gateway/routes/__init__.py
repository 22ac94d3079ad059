"""Gateway endpoints, one module per concern; each has ``routes(gateway)`` (see flows.gateway.app)."""
