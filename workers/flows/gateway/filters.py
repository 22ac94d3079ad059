"""PostgREST-style row filters (``meter_id=eq.X``, ``status=in.(a,b)``,
``balance=lt.5``, ``health=is.null``, ``not.eq``) parsed into the structure
``flows.realtime_filter_sql`` turns into checked SQL. Parsing only: columns and
values are checked by PostgreSQL against the view."""

import json
from collections.abc import Iterable

OPERATORS = ("eq", "neq", "lt", "lte", "gt", "gte", "in", "is")
UNSUPPORTED = ("select", "order", "limit", "offset", "and", "or")


class FilterError(ValueError):
    pass


def parse(params: Iterable[tuple[str, str]]) -> list[dict]:
    """[(column, "op.value"), ...] -> [{"column", "op", "value", "negate"}, ...]."""
    conditions = []
    for column, expression in params:
        if column in UNSUPPORTED:
            raise FilterError(f"{column} is not supported on a stream: changes carry whole rows, in commit order "
                              "(read pages and chosen columns over the API)")
        negate = expression.startswith("not.")
        if negate:
            expression = expression[4:]
        op, dot, value = expression.partition(".")
        if op not in OPERATORS or not dot:
            raise FilterError(f"cannot read filter {column}={expression!r}: use e.g. {column}=eq.VALUE "
                              f"(operators: {', '.join(OPERATORS)}, each optionally after not.)")
        if op == "in":
            value = _list(column, value)
        elif op == "is" and value not in ("null", "true", "false", "unknown"):
            raise FilterError(f"{column}=is.{value}: is takes null, true, false or unknown")
        conditions.append({"column": column, "op": op, "value": value, "negate": negate})
    return conditions


def _list(column: str, text: str) -> list[str]:
    """PostgREST's in.(a,b,"c,d") list."""
    if not (text.startswith("(") and text.endswith(")")):
        raise FilterError(f"{column}=in.{text}: write the values in parentheses, e.g. in.(a,b)")
    items, current, quoted, escaped = [], "", False, False
    for char in text[1:-1]:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append(current)
            current = ""
        else:
            current += char
    if current or items:
        items.append(current)
    return items


def canonical(conditions: list[dict]) -> str:
    """One string per distinct filter, so subscriptions with the same filter share its evaluation."""
    return json.dumps(sorted(conditions, key=lambda c: json.dumps(c, sort_keys=True)), sort_keys=True)


def pinned_keys(conditions: list[dict], key_column: str) -> frozenset[str] | None:
    """The only keys a filter can match when it pins the key column (eq / in), else None."""
    pinned = None
    for condition in conditions:
        if condition["column"] != key_column or condition["negate"]:
            continue
        if condition["op"] == "eq":
            values = frozenset([condition["value"]])
        elif condition["op"] == "in":
            values = frozenset(condition["value"])
        else:
            continue
        pinned = values if pinned is None else pinned & values
    return pinned
