"""The deployment files of the scaled topology and its monitoring, held to what
the tests run: docker-compose.yml has a service for each part `flows up
--topology scaled` starts, wired the same way; Prometheus scrapes the same jobs;
the alert rules pass promtool's checks and tests; nginx accepts the production
configuration (TLS, rate limits) and shares its proxy rules with the local one;
the exporter's queries name only views the migrations create."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from flows.paths import ROOT
from flows.stack import monitoring, topology
from flows.stack.config import StackConfig

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DEPLOY = ROOT / "deploy"


def scaled_config(tmp_path: Path) -> StackConfig:
    return StackConfig(home=str(tmp_path), pg_port=5432, api_port=3000, admin_port=3001, jwt_secret="s" * 40,
                       authenticator_password="pw", monitoring=True, topology="scaled", metrics_port=9464,
                       exporter_port=9187, blackbox_port=9115, prometheus_port=9090, gateway_port=8090,
                       pgbouncer_port=6432, replica_port=5433, api2_port=3010, api2_admin_port=3011,
                       readonly_api_port=3020, readonly_admin_port=3021, proxy_port=8080, readonly_proxy_port=8081)


def test_compose_has_a_service_for_each_part_of_the_scaled_topology():
    missing = {part: service for part, service in topology.COMPONENTS.items() if service not in SERVICES}
    assert not missing, f"docker-compose.yml lacks {missing}"


def test_compose_wires_them_as_the_tested_topology():
    for name in ("postgrest", "postgrest-2"):
        env = SERVICES[name]["environment"]
        assert "@pgbouncer:6432/flows" in env["PGRST_DB_URI"], f"{name} does not go through PgBouncer"
        assert env["PGRST_DB_PREPARED_STATEMENTS"] == "false" and env["PGRST_DB_CHANNEL_ENABLED"] == "false"
        assert SERVICES[name]["image"] == "postgrest/postgrest:v12.0.2"
    readonly = SERVICES["postgrest-readonly"]["environment"]
    assert "@db-replica:5432/flows" in readonly["PGRST_DB_URI"]
    assert "@db:5432/flows" in SERVICES["workers"]["environment"]["FLOWS_DATABASE_URL"], "workers LISTEN: direct"
    assert "--slot flows_replica" in SERVICES["db-replica"]["command"][0]
    assert topology.REPLICA_NAME == "flows_replica"
    assert "cluster_name=flows_replica" in SERVICES["db-replica"]["command"][0]
    ini = (DEPLOY / "pgbouncer" / "pgbouncer.ini").read_text()
    local_ini = topology.pgbouncer_ini(scaled_config(Path("/tmp")), Path("/tmp/userlist.txt"))
    for setting in ("pool_mode = transaction", "max_client_conn = 5000", f"default_pool_size = {topology.POOL_SIZE}"):
        assert setting in ini and setting in local_ini, setting
    assert "./deploy/pgbouncer/pgbouncer.ini:/etc/flows/pgbouncer.ini:ro" in SERVICES["pgbouncer"]["volumes"]
    # the env PostgREST gets behind PgBouncer, here and in the stack
    assert set(topology.postgrest_env(scaled_config(Path("/tmp")))) <= set(SERVICES["postgrest"]["environment"])


def test_nginx_upstreams_are_the_compose_services():
    conf = (DEPLOY / "nginx" / "flows.conf").read_text()
    servers = set(re.findall(r"^\s*server\s+([\w-]+):3000", conf, re.M))
    assert servers == {"postgrest", "postgrest-2", "postgrest-readonly"} and servers <= set(SERVICES)
    volumes = SERVICES["nginx"]["volumes"]
    for shared in ("proxy.conf", "readonly.conf"):
        assert f"./deploy/nginx/{shared}:/etc/nginx/flows/{shared}:ro" in volumes
        assert f"include /etc/nginx/flows/{shared};" in conf
    local = topology.nginx_conf(scaled_config(Path("/tmp/x")), Path("/tmp/x"))
    assert "include /tmp/x/proxy.conf;" in local and "include /tmp/x/readonly.conf;" in local


@pytest.mark.skipif(not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists(), reason="nginx missing")
def test_nginx_accepts_the_production_config_with_tls_and_rate_limits(tmp_path):
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=flows",
                    "-keyout", str(tls / "flows.key"), "-out", str(tls / "flows.crt")], check=True, capture_output=True)
    flows_conf = (DEPLOY / "nginx" / "flows.conf").read_text()
    assert "ssl_certificate" in flows_conf and "limit_req zone=flows_api" in flows_conf
    assert "limit_req zone=flows_money" in flows_conf and "return 301 https://" in flows_conf
    local = (flows_conf.replace("/etc/nginx/tls/", f"{tls}/").replace("/etc/nginx/flows/", f"{DEPLOY}/nginx/")
             .replace("server postgrest", "server 127.0.0.1:3000; #").replace("listen 80;", "listen 127.0.0.1:18080;")
             .replace("listen 443 ssl", "listen 127.0.0.1:18443 ssl")
             .replace("listen 8443 ssl", "listen 127.0.0.1:18444 ssl"))
    (tmp_path / "flows.conf").write_text(local)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log stderr; events {{}}\n"
        f"http {{ client_body_temp_path {tmp_path}/b; proxy_temp_path {tmp_path}/p;\n"
        f"       include {tmp_path}/flows.conf; }}\n")
    result = subprocess.run(["/usr/sbin/nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_prometheus_scrapes_the_same_jobs_here_and_in_compose(tmp_path):
    compose_jobs = {job["job_name"] for job in yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())[
        "scrape_configs"]}
    stack_jobs = set(monitoring.scrape_jobs(scaled_config(tmp_path)))
    assert compose_jobs == stack_jobs
    for service in ("postgres-exporter", "blackbox", "prometheus", "grafana"):
        assert service in SERVICES
    compose_targets = yaml.safe_dump(yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text()))
    for host in re.findall(r"(?:http://)?([\w-]+):\d+", compose_targets):
        assert host in SERVICES or host == "localhost", f"{host} is not a compose service"
    assert "./deploy/prometheus/postgres-exporter-queries.yaml:/etc/postgres-exporter/queries.yaml:ro" in SERVICES[
        "postgres-exporter"]["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in SERVICES["grafana"]["volumes"]


def test_promtool_checks_the_configs_and_runs_the_alert_tests(tmp_path):
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    rules = subprocess.run([promtool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
                           capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    tested = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=DEPLOY / "prometheus",
                            capture_output=True, text=True)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    # the compose config (its rule file where compose mounts it) and the stack's generated one
    compose = (DEPLOY / "prometheus" / "prometheus.yml").read_text().replace(
        "/etc/prometheus/alerts.yml", str(DEPLOY / "prometheus" / "alerts.yml"))
    (tmp_path / "compose.yml").write_text(compose)
    (tmp_path / "stack.yml").write_text(yaml.safe_dump(monitoring.prometheus_config(scaled_config(tmp_path))))
    for name in ("compose.yml", "stack.yml"):
        checked = subprocess.run([promtool, "check", "config", str(tmp_path / name)], capture_output=True, text=True)
        assert checked.returncode == 0, f"{name}: {checked.stdout}{checked.stderr}"


def test_alert_rules_cover_what_pages():
    alerts = {rule["alert"]: rule for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())[
        "groups"] for rule in group["rules"]}
    assert {"FlowsCommandQueueStuck", "FlowsSyncSuccessFalling", "FlowsTokenPushesFailing"} <= set(alerts)
    tested = (DEPLOY / "prometheus" / "alerts_test.yml").read_text()
    for name in ("FlowsCommandQueueStuck", "FlowsSyncSuccessFalling", "FlowsTokenPushesFailing", "FlowsTopUpsWaiting",
                 "FlowsPaymentsNotSubmitted", "FlowsProcessorEventsUnmatched", "FlowsLastMonthNotBilled",
                 "FlowsStatementsNotRendered",
                 "FlowsNotificationsBacklog", "FlowsNotificationsDeadLetters", "FlowsPaymentWithoutCredit",
                 "FlowsReconciliationExceptionsWaiting", "FlowsBankEntriesUnmatched"):
        assert f"alertname: {name}" in tested, f"{name} has no promtool test"


def test_exporter_queries_read_only_the_monitoring_views():
    queries = yaml.safe_load((DEPLOY / "prometheus" / "postgres-exporter-queries.yaml").read_text())
    source = (ROOT / "sql" / "schema" / "monitoring.sql").read_text()
    grants = (ROOT / "sql" / "rls" / "privileges.sql").read_text()
    for name, query in queries.items():
        for view in re.findall(r"monitoring\.(\w+)", query["query"]):
            assert f"CREATE VIEW monitoring.{view} " in source and f"monitoring.{view}" in grants, (name, view)
