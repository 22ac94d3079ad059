"""Top-up token vending: the adapter interface and the test vendor (which is not STS)."""

from flows.vending.adapter import VendedToken, VendingAdapter, get_vendor, register_vendor
from flows.vending.emulated import EmulatedVendor, TokenRejected, default_master_secret
from flows.vending.sequences import FileSequenceStore, MemorySequenceStore, SequenceStore

__all__ = [
    "EmulatedVendor",
    "FileSequenceStore",
    "MemorySequenceStore",
    "SequenceStore",
    "TokenRejected",
    "VendedToken",
    "VendingAdapter",
    "get_vendor",
    "register_vendor",
    "default_master_secret",
]
