"""Who is connecting: a JWT verified as PostgREST verifies it (HS256, the same
secret, ``exp``), and the database role and claims the gateway reads as."""

import json
import time
from dataclasses import dataclass, field
from functools import cached_property

import jwt

from flows.auth import ROLES

# Roles a realtime client may have (anon sees nothing, so it is refused at the door).
REALTIME_ROLES = frozenset(role for role in ROLES.values() if role != "flows_anon")
# Registered time claims: they differ token by token but never change what a role sees,
# so subscribers whose other claims match share one audience (one query per change batch).
TIME_CLAIMS = ("exp", "iat", "nbf")


class AuthError(Exception):
    """A token that cannot be used: missing, invalid, expired, or for a role without realtime."""


@dataclass(frozen=True)
class Principal:
    role: str
    claims: dict = field(hash=False, compare=False)
    expires_at: float | None = None  # epoch seconds

    @cached_property
    def audience(self) -> str:
        """Role and claims without the time claims, as canonical JSON: equal for subscribers who see the same."""
        claims = {k: v for k, v in self.claims.items() if k not in TIME_CLAIMS}
        return json.dumps({"role": self.role, "claims": claims}, sort_keys=True, separators=(",", ":"))

    def seconds_left(self) -> float | None:
        return None if self.expires_at is None else self.expires_at - time.time()


def verify(token: str | None, secret: str) -> Principal:
    if not token:
        raise AuthError("no token: send Authorization: Bearer <JWT> (or the token as the socket's first message)")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError as error:
        raise AuthError(f"invalid token: {error}") from None
    role = claims.get("role")
    if role not in REALTIME_ROLES:
        raise AuthError(f"role {role!r} cannot follow changes" if role else "the token has no role claim")
    exp = claims.get("exp")
    return Principal(role=role, claims=claims, expires_at=float(exp) if exp is not None else None)


def bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None
