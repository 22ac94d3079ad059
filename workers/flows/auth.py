"""JWTs for the API: which roles exist, and minting tokens for them.

PostgREST verifies the token (HS256, shared secret) and switches to the
database role in the "role" claim; row-level security reads the other claims
(``esco``: an ESCO code; ``customer``: the customer id of a customer token,
whose accounts decide what it sees).
"""

import re
from datetime import UTC, datetime, timedelta

import jwt

from flows.errors import ConfigError

# Short names users type -> database roles (sql/rls/roles.sql).
ROLES = {
    "admin": "flows_admin",
    "operator": "flows_operator",
    "analyst": "flows_analyst",
    "service": "flows_service",
    "customer": "flows_customer",
    "anon": "flows_anon",
}
ROLES_NEEDING_ESCO = {"flows_operator", "flows_analyst", "flows_customer"}

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def database_role(role: str) -> str:
    if role in ROLES:
        return ROLES[role]
    if role in ROLES.values():
        return role
    raise ConfigError(f"unknown role {role!r}", hint=f"one of {', '.join(ROLES)}")


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """'12h', '30d' or an ISO-8601 time -> the expiry time (UTC). Every token expires: the API refuses
    tokens without one; long-lived integrations use revocable API keys instead."""
    now = now or datetime.now(UTC)
    if text == "never":
        raise ConfigError("tokens always expire (the API refuses a token without exp)",
                          hint="give a lifetime such as 12h; integrations use `flows api-key create`")
    if match := _DURATION.match(text):
        return now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"cannot read expiry {text!r}", hint="use e.g. 30m, 12h, 7d or 2027-01-01T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment <= now:
        raise ConfigError(f"expiry {text!r} is in the past")
    return moment.astimezone(UTC)


def mint_token(
    secret: str,
    role: str,
    esco: str | None = None,
    expires: datetime | None = None,
    extra_claims: dict | None = None,
    audience: str | None = None,
) -> str:
    db_role = database_role(role)
    if db_role in ROLES_NEEDING_ESCO and not esco:
        raise ConfigError(f"role {role} needs an ESCO", hint="pass --esco CODE")
    if db_role == "flows_customer" and not (extra_claims or {}).get("customer"):
        raise ConfigError("a customer token needs the customer's id", hint="pass --customer ID")
    if len(secret) < 32:
        raise ConfigError("the JWT secret must be at least 32 characters")

    now = datetime.now(UTC)
    claims = {"role": db_role, "iat": int(now.timestamp()), **({"aud": audience} if audience else {}),
              **(extra_claims or {})}
    if esco:
        claims["esco"] = esco
    if expires is not None:
        claims["exp"] = int(expires.timestamp())
    return jwt.encode(claims, secret, algorithm="HS256")
