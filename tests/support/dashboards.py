"""What the Grafana dashboards (deploy/grafana/dashboards) and the alert rules
(deploy/prometheus/alerts.yml) ask of the data: PromQL expressions, the metric
names in them, and SQL panel queries."""

import json
import re
from pathlib import Path

import yaml

from flows.paths import ROOT

DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan"}


def panels(path: Path) -> list[dict]:
    return json.loads(path.read_text())["panels"]


def promql_exprs() -> list[tuple[str, str]]:
    """(where, expression) of every PromQL query: dashboard panels and alert rules."""
    found = []
    for path in DASHBOARDS:
        for panel in panels(path):
            if panel["datasource"]["type"] == "prometheus":
                found += [(f"{path.name}: {panel['title']}", t["expr"]) for t in panel["targets"]]
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        found += [(f"alert {rule['alert']}", rule["expr"]) for rule in group["rules"]]
    return found


def sql_panels() -> list[tuple[str, str]]:
    return [(f"{path.name}: {panel['title']}", target["rawSql"])
            for path in DASHBOARDS for panel in panels(path)
            if panel["datasource"]["type"] == "grafana-postgresql-datasource" for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not functions, labels, keywords or numbers)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        rest = text[match.end():].lstrip()
        word = match.group()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names
