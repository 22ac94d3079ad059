"""The test vendor (adapter ``test``): 20-digit tokens for emulated meters. NOT STS, not for real meters or money.

A token is the 20-digit, zero-padded decimal form of a 66-bit number:

    bits 65..34  MAC       first 32 bits of HMAC-SHA256(meter key, "serial|amount|sequence")
    bits 33..17  sequence  1..131071, per meter, never reused
    bits 16..0   amount    in pence, 1..131071 (0.01 .. 1310.71 GBP)

The meter key is HMAC-SHA256(master secret, "flows-test-vendor|" + serial), so a
token is valid for one meter only. A meter (the emulator) accepts a token when
its MAC checks with its own key and its sequence is one it has not used yet.
A 32-bit MAC is enough to catch typos and forged test tokens; it is not a
security design. The master secret is ``FLOWS_TEST_VENDOR_SECRET``, or else a
random secret kept in ``test-vendor.secret`` in the home folder (created on first
use; see flows.settings), which ``flows vend`` and ``flows emulator`` on one
machine then share.
"""

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from flows.errors import ConfigError, FlowsError
from flows.vending.adapter import VendedToken, register_vendor
from flows.vending.sequences import FileSequenceStore, SequenceStore

AMOUNT_BITS = 17
SEQUENCE_BITS = 17
MAC_BITS = 32
MAX_PENCE = (1 << AMOUNT_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
TOKEN_DIGITS = 20


class TokenRejected(FlowsError):
    """A token that is malformed, forged, for another meter, or already used."""


@dataclass(frozen=True, slots=True)
class TokenContent:
    amount: Decimal
    sequence: int


def meter_key(master_secret: bytes, serial: str) -> bytes:
    return hmac.new(master_secret, b"flows-test-vendor|" + serial.encode(), hashlib.sha256).digest()


def _mac(key: bytes, serial: str, pence: int, sequence: int) -> int:
    message = f"{serial}|{pence}|{sequence}".encode()
    return int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:4], "big")


def amount_to_pence(amount) -> int:
    if isinstance(amount, float):
        raise FlowsError("amounts are Decimal or text, never float")
    try:
        pence = Decimal(amount) * 100
    except (InvalidOperation, TypeError, ValueError):
        raise FlowsError(f"{amount!r} is not an amount in GBP") from None
    if not pence.is_finite() or pence != pence.to_integral_value():
        raise FlowsError(f"{amount} GBP is not a whole number of pence")
    if not 1 <= pence <= MAX_PENCE:
        raise FlowsError(f"the test vendor mints 0.01 to {Decimal(MAX_PENCE) / 100} GBP, not {amount}")
    return int(pence)


def encode_token(key: bytes, serial: str, pence: int, sequence: int) -> str:
    if not 1 <= sequence <= MAX_SEQUENCE:
        raise FlowsError(f"meter {serial} has used all {MAX_SEQUENCE} test-vendor sequences")
    number = (
        (_mac(key, serial, pence, sequence) << (SEQUENCE_BITS + AMOUNT_BITS))
        | (sequence << AMOUNT_BITS)
        | pence
    )
    return f"{number:0{TOKEN_DIGITS}d}"


def decode_token(key: bytes, serial: str, token: str) -> TokenContent:
    """Check a token against a meter's key; the amount and sequence, or TokenRejected."""
    if len(token) != TOKEN_DIGITS or not token.isascii() or not token.isdigit():
        raise TokenRejected("a test-vendor token is 20 digits")
    number = int(token)
    if number >> (MAC_BITS + SEQUENCE_BITS + AMOUNT_BITS):
        raise TokenRejected("not a test-vendor token")
    pence = number & MAX_PENCE
    sequence = (number >> AMOUNT_BITS) & MAX_SEQUENCE
    mac = number >> (SEQUENCE_BITS + AMOUNT_BITS)
    if not hmac.compare_digest(mac.to_bytes(4, "big"), _mac(key, serial, pence, sequence).to_bytes(4, "big")):
        raise TokenRejected(f"token is not valid for meter {serial}")
    if pence == 0 or sequence == 0:
        raise TokenRejected("token carries no amount or no sequence")
    return TokenContent(Decimal(pence) / 100, sequence)


def default_master_secret(home: Path) -> bytes:
    """FLOWS_TEST_VENDOR_SECRET, else the secret file in ``home`` (created, mode 0600, on first use)."""
    if os.environ.get("FLOWS_TEST_VENDOR_SECRET"):
        return os.environ["FLOWS_TEST_VENDOR_SECRET"].encode()
    path = home / "test-vendor.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(secrets.token_hex(32) + "\n")
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # first writer wins; a concurrent one reads the winner's secret
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    secret = path.read_text().strip()
    if len(secret) < 16:
        raise ConfigError(f"the test vendor secret in {path} is too short")
    return secret.encode()


class EmulatedVendor:
    """Mints test tokens with ``master_secret``; sequences come from ``store``."""

    name = "test"

    def __init__(self, master_secret: bytes, store: SequenceStore):
        self.master_secret = master_secret
        self.store = store

    @classmethod
    def at_home(cls, home: Path) -> "EmulatedVendor":
        """The machine's test vendor: its secret and a lock-protected sequence file in ``home``."""
        return cls(default_master_secret(home), FileSequenceStore(home / "test-vendor-sequences.json"))

    async def vend(self, serial: str, amount) -> VendedToken:
        pence = amount_to_pence(amount)
        sequence = await self.store.next_sequence(serial)
        token = encode_token(meter_key(self.master_secret, serial), serial, pence, sequence)
        return VendedToken(serial, Decimal(pence) / 100, token, self.name, sequence)


register_vendor("test", EmulatedVendor.at_home)
