"""Top-up token vending: the adapter interface and the test vendor (which is not STS)."""

from flows.vending.adapter import VendedToken, VendingAdapter, get_vendor, register_vendor
from flows.vending.sequences import FileSequenceStore, MemorySequenceStore, SequenceStore
from flows.vending.test_vendor import TestVendor, TokenRejected, default_master_secret

__all__ = [
    "FileSequenceStore",
    "MemorySequenceStore",
    "SequenceStore",
    "TestVendor",
    "TokenRejected",
    "VendedToken",
    "VendingAdapter",
    "get_vendor",
    "register_vendor",
    "default_master_secret",
]
