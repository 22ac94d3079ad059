"""The scaled topology on one machine (``flows up --topology scaled``): what a
production deployment runs, started beside the embedded stack.

    clients ──► nginx :proxy_port ──► postgrest, postgrest-2 ──► PgBouncer (transaction pooling) ──► primary
    analysts, dashboards ──► nginx :readonly_proxy_port ──► postgrest-readonly ──► replica (streaming)
    workers ──► primary, directly (LISTEN needs a session of its own)

The replica is a pg_basebackup of the primary streaming through a replication
slot; its PostgREST refuses writes (the request check says why). The two API
instances share PgBouncer, so 2,000 clients cost the primary a pool of
connections, not 2,000. docker-compose.yml describes the same services (a test
holds them together: COMPONENTS below).
"""

import os
import signal
import subprocess
from pathlib import Path

from flows.errors import FlowsError
from flows.paths import POSTGREST_BIN, POSTGREST_CONF, ROOT, pg_bindir
from flows.stack.config import StackConfig
from flows.stack.osuser import as_server_user, give_to_server_user, is_root
from flows.stack.postgres import SUPERUSER, Cluster

TOPOLOGIES = ("single", "scaled")
PGBOUNCER_BIN = Path("/usr/sbin/pgbouncer")
NGINX_BIN = Path("/usr/sbin/nginx")
REPLICA_NAME = "flows_replica"  # its cluster_name: the application_name the primary reports lag for
POOL_SIZE = 40  # server connections PgBouncer keeps to the primary for the API

# What the scaled topology runs, and the docker compose service playing each part.
COMPONENTS = {
    "primary": "db",
    "replica": "db-replica",
    "pgbouncer": "pgbouncer",
    "postgrest": "postgrest",
    "postgrest-2": "postgrest-2",
    "postgrest-readonly": "postgrest-readonly",
    "nginx": "nginx",
    "worker": "workers",
}
DATABASE_SIDE = ("pgbouncer",)  # started before the API instances, stopped after them
API_SIDE = ("postgrest-2", "postgrest-readonly", "nginx")  # started after the first API instance
PROCESSES = DATABASE_SIDE + API_SIDE


def replica_cluster(config: StackConfig) -> Cluster:
    return Cluster(datadir=config.home_dir / "replica-pgdata", socket_dir=config.home_dir / "replica-socket",
                   logfile=config.log_dir / "replica.log", port=config.replica_port)


def pgbouncer_url(config: StackConfig, user: str = "flows_authenticator", password: str | None = None) -> str:
    auth = f"{user}:{password}" if password else user
    return f"postgresql://{auth}@127.0.0.1:{config.pgbouncer_port}/{config.database}"


def postgrest_env(config: StackConfig) -> dict[str, str]:
    """How the primary's PostgREST instances reach the database in this topology (none: as configured)."""
    if config.topology != "scaled":
        return {}
    return {
        "PGRST_DB_URI": pgbouncer_url(config, password=config.authenticator_password),
        # PgBouncer 1.18 in transaction mode keeps no prepared statements and no LISTEN sessions:
        # the schema cache is reloaded with SIGUSR1 (reload_schema_caches) instead of NOTIFY.
        "PGRST_DB_PREPARED_STATEMENTS": "false",
        "PGRST_DB_CHANNEL_ENABLED": "false",
    }


def choose(stack, topology: str, say) -> None:
    """Switch the stack to ``topology`` (restarting the API if it ran in another one)."""
    config = stack.config
    if topology not in TOPOLOGIES:
        raise FlowsError(f"unknown topology {topology}", hint=f"one of {', '.join(TOPOLOGIES)}")
    if config.topology == topology:
        return
    if stack.postgrest().stop():
        say(f"stopped PostgREST to restart it in the {topology} topology")
    if topology == "single":
        for name in reversed(PROCESSES):
            if stack.process(name).stop():
                say(f"stopped {name}")
    config.topology = topology
    config.save()


# -- before the API: the replica and PgBouncer --------------------------------
def start_database_side(stack, say) -> None:
    config = stack.config
    if config.topology != "scaled":
        return
    _start_replica(stack, say)
    _start_pgbouncer(stack, say)


def _start_replica(stack, say) -> None:
    config = stack.config
    replica = replica_cluster(config)
    config.claim_port("replica_port", config.pg_port + 1, in_use_by_us=replica.running())
    replica = replica_cluster(config)
    if not replica.initialised:
        say(f"creating the streaming replica in {replica.datadir} (pg_basebackup)")
        primary = config.cluster()
        give_to_server_user(replica.datadir, 0o700)
        give_to_server_user(replica.socket_dir, 0o700)
        give_to_server_user(replica.logfile.parent, 0o755)
        result = subprocess.run(as_server_user([
            str(pg_bindir() / "pg_basebackup"), "--pgdata", str(replica.datadir), "--host", str(primary.socket_dir),
            "--port", str(config.pg_port), "--username", SUPERUSER, "--wal-method", "stream",
            "--write-recovery-conf", "--checkpoint", "fast", "--create-slot", "--slot", REPLICA_NAME,
        ]), capture_output=True, text=True)
        if result.returncode != 0 and "already exists" in result.stderr:  # a slot left by an earlier replica
            subprocess.run(as_server_user([str(pg_bindir() / "psql"), "-h", str(primary.socket_dir), "-p",
                                           str(config.pg_port), "-U", SUPERUSER, "-d", "postgres", "-c",
                                           f"SELECT pg_drop_replication_slot('{REPLICA_NAME}')"]),
                           capture_output=True, text=True)
            return _start_replica(stack, say)
        if result.returncode != 0:
            raise FlowsError(f"pg_basebackup failed: {result.stderr.strip().splitlines()[-1:]}")
        settings = (f"\n# Flows streaming replica\nport = {config.replica_port}\n"
                    f"unix_socket_directories = '{replica.socket_dir}'\ncluster_name = '{REPLICA_NAME}'\n"
                    "hot_standby = on\nhot_standby_feedback = on\n")
        subprocess.run(as_server_user(["tee", "-a", str(replica.datadir / "postgresql.conf")]), input=settings,
                       capture_output=True, text=True, check=True)
    if not replica.running():
        say(f"starting the replica on port {config.replica_port}")
        replica.start()


def _start_pgbouncer(stack, say) -> None:
    from flows.stack.stack import wait_port

    config = stack.config
    process = stack.process("pgbouncer")
    port = config.claim_port("pgbouncer_port", 6432, in_use_by_us=process.pid() is not None)
    if process.pid() is not None:
        return
    if not PGBOUNCER_BIN.exists():
        raise FlowsError(f"{PGBOUNCER_BIN} is not installed", hint="run `make setup` (Debian package pgbouncer)")
    folder = config.home_dir / "pgbouncer"
    give_to_server_user(folder, 0o700)
    userlist = folder / "userlist.txt"
    userlist.write_text(f'"flows_authenticator" "{config.authenticator_password}"\n')
    ini = folder / "pgbouncer.ini"
    ini.write_text(pgbouncer_ini(config, userlist))
    for path in (userlist, ini):
        path.chmod(0o600)
        if is_root():
            subprocess.run(["chown", "postgres:postgres", str(path)], check=True)
    say(f"starting PgBouncer on port {port} (transaction pooling, {POOL_SIZE} connections to the primary)")
    # one descriptor per client: raise the soft limit (1024 for the postgres user) to the hard one
    process.start(as_server_user(["sh", "-c", 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$1"', str(PGBOUNCER_BIN),
                                  str(ini)]), cwd=folder)
    if not wait_port(port, timeout=15, alive=process.pid):
        raise FlowsError(f"PgBouncer did not start; see {process.logfile}\n{process.tail(5)}")


def pgbouncer_ini(config: StackConfig, userlist: Path) -> str:
    return f"""; written by `flows up --topology scaled` (deploy/pgbouncer/pgbouncer.ini is the production one)
[databases]
{config.database} = host=127.0.0.1 port={config.pg_port} dbname={config.database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {config.pgbouncer_port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {userlist}
pool_mode = transaction
max_client_conn = 5000
default_pool_size = {POOL_SIZE}
reserve_pool_size = 10
reserve_pool_timeout = 2
server_idle_timeout = 60
ignore_startup_parameters = extra_float_digits
"""


# -- after the API: the second instance, the read-only one, nginx -------------
def start_api_side(stack, say) -> None:
    config = stack.config
    if config.topology != "scaled":
        return
    replica = replica_cluster(config)
    _start_postgrest(stack, "postgrest-2", "api2_port", "api2_admin_port", config.api_port + 10,
                     postgrest_env(config), say)
    _start_postgrest(stack, "postgrest-readonly", "readonly_api_port", "readonly_admin_port", config.api_port + 20,
                     {"PGRST_DB_URI": replica.tcp_url(config.database, "flows_authenticator",
                                                       config.authenticator_password),
                      "PGRST_DB_CHANNEL_ENABLED": "false"}, say)
    _start_nginx(stack, say)


def _start_postgrest(stack, name: str, port_attr: str, admin_attr: str, preferred: int, env: dict, say) -> None:
    from flows.stack.stack import wait_ready

    config = stack.config
    process = stack.process(name)
    running = process.pid() is not None
    port = config.claim_port(port_attr, preferred, in_use_by_us=running)
    admin_port = config.claim_port(admin_attr, preferred + 1, in_use_by_us=running)
    if running:
        return
    say(f"starting {name} on port {port}")
    process.start([str(POSTGREST_BIN), str(POSTGREST_CONF)], env={
        "PGRST_DB_URI": config.authenticator_url(),
        "PGRST_JWT_SECRET": config.jwt_secret,
        "PGRST_SERVER_PORT": str(port),
        "PGRST_ADMIN_SERVER_PORT": str(admin_port),
        "PGRST_OPENAPI_SERVER_PROXY_URI": f"http://127.0.0.1:{port}",
        **env,
    }, cwd=ROOT)
    if not wait_ready(f"http://127.0.0.1:{admin_port}/ready", timeout=30, alive=process.pid):
        detail = process.tail(5)
        process.stop()
        raise FlowsError(f"{name} did not become ready; see {process.logfile}\n{detail}")


def _start_nginx(stack, say) -> None:
    from flows.stack.stack import wait_ready

    config = stack.config
    process = stack.process("nginx")
    running = process.pid() is not None
    port = config.claim_port("proxy_port", 8080, in_use_by_us=running)
    config.claim_port("readonly_proxy_port", port + 1, in_use_by_us=running)
    if running:
        return
    if not NGINX_BIN.exists():
        raise FlowsError(f"{NGINX_BIN} is not installed", hint="run `make setup` (Debian package nginx)")
    folder = config.home_dir / "nginx"
    (folder / "temp").mkdir(parents=True, exist_ok=True)
    # deploy/nginx/proxy.conf and readonly.conf are shared word for word with the production config
    for shared in ("proxy.conf", "readonly.conf"):
        (folder / shared).write_text((ROOT / "deploy" / "nginx" / shared).read_text())
    conf = folder / "nginx.conf"
    conf.write_text(nginx_conf(config, folder))
    check = subprocess.run([str(NGINX_BIN), "-t", "-p", str(folder), "-c", str(conf)], capture_output=True, text=True)
    if check.returncode != 0:
        raise FlowsError(f"nginx refused its configuration: {check.stderr.strip()}")
    say(f"starting nginx on port {port} (API: postgrest and postgrest-2) and {config.readonly_proxy_port} "
        "(read-only API on the replica)")
    process.start([str(NGINX_BIN), "-p", str(folder), "-c", str(conf)], cwd=folder)
    if not wait_ready(f"http://127.0.0.1:{port}/rpc/health", timeout=15, alive=process.pid):
        raise FlowsError(f"nginx did not start; see {process.logfile}\n{process.tail(5)}")


def nginx_conf(config: StackConfig, folder: Path) -> str:
    """The local proxy: the same upstream and retry rules as deploy/nginx/flows.conf, without TLS."""
    user = "user www-data;\n" if is_root() else ""
    temp = folder / "temp"
    return f"""# written by `flows up --topology scaled` (deploy/nginx/flows.conf is the production one, with TLS)
{user}daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {folder / 'nginx.pid'};
error_log stderr warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{_proxy_http_block(
    api=[f"127.0.0.1:{config.api_port}", f"127.0.0.1:{config.api2_port}"],
    readonly=[f"127.0.0.1:{config.readonly_api_port}"])}
    server {{
        listen 127.0.0.1:{config.proxy_port};
        location / {{
            proxy_pass http://flows_api;
            include {folder / 'proxy.conf'};
        }}
    }}
    server {{
        listen 127.0.0.1:{config.readonly_proxy_port};
        include {folder / 'readonly.conf'};
        location / {{
            proxy_pass http://flows_readonly;
            include {folder / 'proxy.conf'};
        }}
    }}
}}
"""


def _proxy_http_block(api: list[str], readonly: list[str]) -> str:
    servers = "".join(f"        server {a} max_fails=1 fail_timeout=5s;\n" for a in api)
    return (f"    upstream flows_api {{\n{servers}        keepalive 64;\n    }}\n"
            f"    upstream flows_readonly {{\n" + "".join(f"        server {a};\n" for a in readonly)
            + "        keepalive 16;\n    }\n"
            "    map $http_x_request_id $flows_request_id { default $http_x_request_id; \"\" $request_id; }\n"
            "    map \"$request_method:$uri\" $flows_readonly_write "
            "{ default 0; \"~^(POST|PATCH|PUT|DELETE):/(?!rpc/)\" 1; }\n")


def reload_schema_caches(stack) -> None:
    """PostgREST instances behind PgBouncer hear no NOTIFY: SIGUSR1 reloads their schema cache."""
    for name in ("postgrest", "postgrest-2", "postgrest-readonly"):
        if (pid := stack.process(name).pid()) is not None:
            os.kill(pid, signal.SIGUSR1)


def stop_replica(config: StackConfig, say) -> None:
    replica = replica_cluster(config)
    if config.replica_port and replica.running():
        replica.stop()
        say("stopped the replica")


def status(stack) -> dict:
    config = stack.config
    if config.topology != "scaled":
        return {}
    from flows.stack.stack import _http_ok

    replica = replica_cluster(config)
    report = {"replica": {"running": replica.running(), "pid": replica.pid() if replica.running() else None,
                          "port": config.replica_port, "url": replica.socket_url(config.database),
                          "log": str(replica.logfile)}}
    urls = {
        "pgbouncer": pgbouncer_url(config),
        "postgrest-2": f"http://127.0.0.1:{config.api2_port}",
        "postgrest-readonly": f"http://127.0.0.1:{config.readonly_api_port}",
        "nginx": f"http://127.0.0.1:{config.proxy_port}",
    }
    for name in PROCESSES:
        process = stack.process(name)
        pid = process.pid()
        report[name] = {"running": pid is not None, "pid": pid, "url": urls[name], "log": str(process.logfile)}
    report["nginx"]["readonly_url"] = f"http://127.0.0.1:{config.readonly_proxy_port}"
    for name, admin in (("postgrest-2", config.api2_admin_port), ("postgrest-readonly", config.readonly_admin_port)):
        report[name]["ready"] = report[name]["running"] and _http_ok(f"http://127.0.0.1:{admin}/ready")
    return report
