#!/usr/bin/env bash
# Ensure a Docker engine answers on this machine.
#
#   scripts/docker-engine.sh            # install docker.io if dockerd is missing, start it, wait
#
# Idempotent: when `docker info` already works it only prints the engine line.
# dockerd logs to /var/log/fly-potato-dockerd.log (or the cache dir when /var/log is not
# writable). Exit status 0 = engine ready; 1 = it cannot be provided here (reason printed).
set -euo pipefail

CACHE_DIR="${FLY_POTATO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fly-potato}"
WAIT_SECONDS="${DOCKER_ENGINE_WAIT:-60}"

say() { printf 'docker-engine: %s\n' "$*"; }
fail() { printf 'docker-engine: %s\n' "$*" >&2; exit 1; }

engine_line() {
    docker info --format 'engine {{.ServerVersion}} ({{.Driver}}, {{.NCPU}} CPUs, {{.Name}})' 2>/dev/null
}

ready() {
    if line="$(engine_line)" && [ -n "$line" ]; then
        say "ready: $line"
        exit 0
    fi
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
    else return 126
    fi
}

no_engine_help() {
    fail "$1 — start a Docker engine yourself (e.g. 'sudo apt-get install docker.io && sudo systemctl start docker', or run as root / with passwordless sudo), add your user to the 'docker' group, or point DOCKER_HOST at a reachable engine."
}

command -v docker >/dev/null || PATH="$PATH:/usr/bin:/usr/local/bin"
ready

# Serialise concurrent callers (parallel make targets, several sessions on one host).
mkdir -p "$CACHE_DIR"
if command -v flock >/dev/null; then
    exec 9>"$CACHE_DIR/docker-engine.lock"
    flock -w $((WAIT_SECONDS * 10)) 9 || fail "another docker-engine.sh holds $CACHE_DIR/docker-engine.lock"
    ready
fi

# The main engine's own process (its pidfile): other dockerds on this host (the swarm lab's nodes) do not count.
main_dockerd_alive() {
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null)" || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]
}

# Someone may be starting it right now (another session, systemd): give a socket a moment.
if [ -S /var/run/docker.sock ] && main_dockerd_alive; then
    for _ in $(seq 1 "$WAIT_SECONDS"); do ready; sleep 1; done
    no_engine_help "dockerd is running but 'docker info' fails (socket permission?)"
fi

if ! command -v dockerd >/dev/null; then
    [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; } \
        || no_engine_help "dockerd is not installed and this user cannot install packages"
    say "installing docker.io (apt)…"
    export DEBIAN_FRONTEND=noninteractive
    # Other apt users on the host are waited for rather than failed on.
    apt_opts=(-o DPkg::Lock::Timeout=900 -qq)
    apt_log="$CACHE_DIR/docker-engine-apt.log"
    # The client at /usr/local/bin/docker may be newer; the package's client just sits in /usr/bin.
    { as_root apt-get "${apt_opts[@]}" update \
        && as_root apt-get "${apt_opts[@]}" install -y --no-install-recommends docker.io iptables ca-certificates
    } >"$apt_log" 2>&1 || { tail -n 5 "$apt_log" >&2; no_engine_help "apt-get install docker.io failed (log: $apt_log)"; }
fi
command -v docker >/dev/null || no_engine_help "no docker client found"

LOG=/var/log/fly-potato-dockerd.log
if ! as_root sh -c ": >> '$LOG'" 2>/dev/null; then
    LOG="$CACHE_DIR/dockerd.log"
fi

say "starting dockerd (log: $LOG)…"
# setsid: the engine must outlive this shell and the make/CI job that called it.
as_root setsid sh -c "exec dockerd >>'$LOG' 2>&1" </dev/null >/dev/null 2>&1 &

for _ in $(seq 1 "$WAIT_SECONDS"); do
    sleep 1
    ready
    if ! main_dockerd_alive && [ "$SECONDS" -gt 5 ]; then
        tail -n 5 "$LOG" >&2 || true
        no_engine_help "dockerd exited right after start (see $LOG)"
    fi
done
no_engine_help "dockerd did not answer within ${WAIT_SECONDS}s (see $LOG)"
