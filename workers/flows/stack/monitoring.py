"""Monitoring beside the embedded stack (``flows up --monitoring``): Debian's
prometheus-postgres-exporter with the business queries of
deploy/prometheus/postgres-exporter-queries.yaml, logging in as flows_monitor,
Debian's prometheus-blackbox-exporter probing every PostgREST admin server
(PostgREST 12 has no metrics endpoint), and a Prometheus scraping them, the
worker and the gateway, with the alert rules of deploy/prometheus/alerts.yml.

The scrape jobs are the same names as deploy/prometheus/prometheus.yml (the
docker compose deployment); a test holds the two together.
"""

import secrets
from pathlib import Path

import yaml

from flows.db import admin
from flows.errors import FlowsError
from flows.paths import ROOT
from flows.stack.config import StackConfig

EXPORTER_BIN = Path("/usr/bin/prometheus-postgres-exporter")
BLACKBOX_BIN = Path("/usr/bin/prometheus-blackbox-exporter")
PROMETHEUS_BIN = Path("/usr/bin/prometheus")
DEPLOY_PROMETHEUS = ROOT / "deploy" / "prometheus"
EXPORTER_QUERIES = DEPLOY_PROMETHEUS / "postgres-exporter-queries.yaml"
ALERT_RULES = DEPLOY_PROMETHEUS / "alerts.yml"
BLACKBOX_CONFIG = DEPLOY_PROMETHEUS / "blackbox.yml"
PROCESSES = ("exporter", "blackbox", "prometheus")
SCRAPE_INTERVAL = "5s"  # local: fresh numbers within seconds; production uses 15s


def monitor_url(config: StackConfig) -> str:
    return config.cluster().tcp_url(config.database, "flows_monitor", config.monitor_password) + "?sslmode=disable"


def scrape_jobs(config: StackConfig) -> dict[str, list[str]]:
    """Prometheus job -> targets (host:port) of what runs in this stack."""
    local = "127.0.0.1:{}".format
    jobs = {
        "postgres": [local(config.exporter_port)],
        "worker": [local(config.metrics_port)] if config.metrics_port else [],
        "postgrest": [f"http://127.0.0.1:{port}/ready" for port in postgrest_admin_ports(config)],
        "blackbox": [local(config.blackbox_port)],
        "prometheus": [local(config.prometheus_port)],
    }
    if config.gateway_port:  # the gateway serves /metrics on its own port
        jobs["gateway"] = [local(config.gateway_port)]
    return {job: targets for job, targets in jobs.items() if targets}


def postgrest_admin_ports(config: StackConfig) -> list[int]:
    scaled = [config.api2_admin_port, config.readonly_admin_port] if config.topology == "scaled" else []
    return [port for port in (config.admin_port, *scaled) if port]


def prometheus_config(config: StackConfig) -> dict:
    scrape = []
    for job, targets in scrape_jobs(config).items():
        entry = {"job_name": job, "static_configs": [{"targets": targets}]}
        if job == "postgrest":  # probed through the blackbox exporter
            entry |= {"metrics_path": "/probe", "params": {"module": ["http_ready"]}, "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"127.0.0.1:{config.blackbox_port}"}]}
        scrape.append(entry)
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL,
                   "external_labels": {"stack": "flows-embedded"}},
        "rule_files": [str(ALERT_RULES)],
        "scrape_configs": scrape,
    }


def start(stack, say) -> None:
    """Start the exporter and Prometheus (each once) and remember that the stack has monitoring."""
    from flows.stack.stack import wait_ready  # the stack imports this module

    config = stack.config
    for binary in (EXPORTER_BIN, BLACKBOX_BIN, PROMETHEUS_BIN):
        if not binary.exists():
            raise FlowsError(f"{binary} is not installed", hint="run `make setup` (Debian packages prometheus, "
                                                                 "prometheus-postgres-exporter and -blackbox-exporter)")
    if not config.monitor_password:
        config.monitor_password = secrets.token_urlsafe(24)
    config.monitoring = True
    config.save()
    admin.set_role_password(stack.admin_url, "flows_monitor", config.monitor_password)

    exporter = stack.process("exporter")
    port = config.claim_port("exporter_port", 9187, in_use_by_us=exporter.pid() is not None)
    if exporter.pid() is None:
        say(f"starting the PostgreSQL exporter (http://127.0.0.1:{port}/metrics)")
        exporter.start([str(EXPORTER_BIN), f"--web.listen-address=127.0.0.1:{port}",
                        f"--extend.query-path={EXPORTER_QUERIES}", "--log.level=warn"],
                       env={"DATA_SOURCE_NAME": monitor_url(config)}, cwd=config.home_dir)
        if not wait_ready(f"http://127.0.0.1:{port}/metrics", timeout=20, alive=exporter.pid):
            raise FlowsError(f"the exporter did not start; see {exporter.logfile}\n{exporter.tail(5)}")

    blackbox = stack.process("blackbox")
    port = config.claim_port("blackbox_port", 9115, in_use_by_us=blackbox.pid() is not None)
    if blackbox.pid() is None:
        say(f"starting the blackbox exporter (probes the PostgREST admin servers; http://127.0.0.1:{port})")
        blackbox.start([str(BLACKBOX_BIN), f"--config.file={BLACKBOX_CONFIG}", f"--web.listen-address=127.0.0.1:{port}",
                        "--log.level=warn"], cwd=config.home_dir)
        if not wait_ready(f"http://127.0.0.1:{port}/metrics", timeout=20, alive=blackbox.pid):
            raise FlowsError(f"the blackbox exporter did not start; see {blackbox.logfile}\n{blackbox.tail(5)}")

    prometheus = stack.process("prometheus")
    port = config.claim_port("prometheus_port", 9090, in_use_by_us=prometheus.pid() is not None)
    folder = config.home_dir / "prometheus"
    folder.mkdir(exist_ok=True)
    config_file = folder / "prometheus.yml"
    wanted = yaml.safe_dump(prometheus_config(config), sort_keys=False)
    if prometheus.pid() is not None and config_file.exists() and config_file.read_text() != wanted:
        prometheus.stop()  # the targets changed (another topology, the gateway): start it anew
    config_file.write_text(wanted)
    if prometheus.pid() is None:
        say(f"starting Prometheus (http://127.0.0.1:{port})")
        prometheus.start([str(PROMETHEUS_BIN), f"--config.file={config_file}",
                          f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                          "--storage.tsdb.retention.time=7d", "--log.level=warn"], cwd=folder)
        if not wait_ready(f"http://127.0.0.1:{port}/-/ready", timeout=30, alive=prometheus.pid):
            raise FlowsError(f"Prometheus did not start; see {prometheus.logfile}\n{prometheus.tail(5)}")


def urls(config: StackConfig) -> dict[str, str]:
    """Where ``flows status`` says each monitoring process answers."""
    return {"exporter": f"http://127.0.0.1:{config.exporter_port}/metrics",
            "blackbox": f"http://127.0.0.1:{config.blackbox_port}",
            "prometheus": f"http://127.0.0.1:{config.prometheus_port}"}
