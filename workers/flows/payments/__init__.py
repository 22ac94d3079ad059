"""Money in through a payment processor: the adapter (processor.py) and its Stripe implementation
(stripe_processor.py), the payments job the worker runs (job.py, queries.py), and the test processor, a local
stand-in for Stripe's API (test_processor.py). docs/payments.md."""
