"""Flows: meter data platform for prepayment electricity meters in energy communities."""

__version__ = "0.1.0"
