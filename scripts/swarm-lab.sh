#!/usr/bin/env bash
# A real three-node Docker Swarm on this one machine, plus the TLS registry its nodes pull from (make e2e-swarm).
#
#   scripts/swarm-lab.sh up              build the lab (idempotent: a healthy lab is left as it is)
#   scripts/swarm-lab.sh down            remove everything `up` made; safe when nothing is up
#   scripts/swarm-lab.sh status          nodes, labels, registry, sshd, tunnels; exit 1 unless the lab is healthy
#   scripts/swarm-lab.sh env NODE        DOCKER_HOST=unix://… of node1|node2|node3 (1, fp-swarm-1 also work)
#   scripts/swarm-lab.sh push IMAGE…     copy images of the main engine into the registry; prints repo@sha256:…
#   scripts/swarm-lab.sh stop-node NODE  stop one node's dockerd and containerd (by pid), as a lost machine
#   scripts/swarm-lab.sh start-node NODE start it again and wait until the manager sees it Ready
#   scripts/swarm-lab.sh tunnel LOCAL:REMOTE…  SSH tunnel(s) 127.0.0.1:LOCAL here -> the manager's 127.0.0.1:REMOTE
#   scripts/swarm-lab.sh untunnel        stop every lab tunnel
#   scripts/swarm-lab.sh ssh-config      the ssh options of the operator tunnel (key, known_hosts, user@host)
#
# Layout (root only; nothing here touches the main Docker engine, its images or its configuration):
#   - host bridge fp-swarm0 = 198.18.232.1/24; network namespaces fp-swarm-1..3, each with a veth
#     (host side fp-swarm-v1..3, inside eth0) at 198.18.232.11, .12, .13;
#   - one dockerd per node, inside its namespace (nsenter --net) and in private mount + UTS namespaces:
#     hostname fp-swarm-N, its own /etc/docker (so its own key.json and certs.d), data under
#     /var/lib/fly-potato-swarm/nodeN, socket /run/fly-potato-swarm/nodeN.sock, log nodeN.log there;
#     storage driver overlay2 when the host supports it (vfs otherwise: FP_SWARM_STORAGE_DRIVER);
#   - swarm: fp-swarm-1 manager (swarm init --advertise-addr 198.18.232.11), fp-swarm-2/3 workers;
#   - node labels, what the swarm deploy places services with:
#       fp-swarm-1  fly-potato.role=data   stateful services (PostgreSQL, Prometheus, Alertmanager and
#                                          their volumes) carry `node.labels.fly-potato.role==data`;
#       fp-swarm-2  fly-potato.role=edge   nginx, published in host mode (ports on the node's own
#       fp-swarm-3  fly-potato.role=edge   address), constrained to `node.labels.fly-potato.role==edge`,
#                                          one per node; stateless services go anywhere;
#   - registry (Debian's docker-registry, scripts/deps/registry.sh) on https://198.18.232.1:5000 with a CA
#     the lab generates; every node trusts it through its own certs.d (no --insecure-registry anywhere);
#     config and storage under /var/lib/fly-potato-swarm/registry;
#   - iptables: FORWARD drops by default and bridged packets traverse it, so chain FP-SWARM accepts
#     lab-subnet-to-lab-subnet traffic on fp-swarm0 only, hooked first in DOCKER-USER (FORWARD without it);
#   - this kernel (see `status`) may lack IPVS and ESP: then service VIPs, the ingress routing mesh and
#     encrypted overlays do not work between nodes; use endpoint mode dnsrr and host-mode publishing
#     (without IPVS `up` removes the ingress network, so an ingress-mode publish is refused, not silent);
#   - operator tunnel: the platform publishes Postgres and Keycloak on the manager's 127.0.0.1 only, so operators
#     (and the Pulumi providers) reach them over SSH, `ssh -N -L 127.0.0.1:L:127.0.0.1:R root@198.18.232.11`.
#     Debian's OpenSSH (scripts/deps/sshd.sh, which starts no sshd on the host); one sshd inside fp-swarm-1's
#     network namespace only (host mount namespace), on 198.18.232.11:22, with its own config, host key and
#     authorized_keys under /var/lib/fly-potato-swarm/ssh, pidfile /run/fly-potato-swarm/sshd.pid; one lab
#     ed25519 key, allowed nothing but local forwarding to the manager's 127.0.0.1 (no shell, pty, agent, X11);
#     a known_hosts the lab writes, so clients check the host key; tunnels' pids in /run/fly-potato-swarm/tunnels;
#   - CPU: the node daemons, the registry, the sshd, the tunnels and every lab container run under the cgroup
#     fly-potato-swarm, capped at FP_SWARM_CPUS (default 1) CPUs, as the machine is shared.
# More in docs/swarm-lab.md. `down` stops those processes by pid (pidfiles and the lab's own cgroup), then removes
# namespaces, links, the bridge, the iptables chain, the cgroups and both directories (keys included).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAB_DIR=/var/lib/fly-potato-swarm
RUN_DIR=/run/fly-potato-swarm
LOCK=/run/fly-potato-swarm.lock
BRIDGE=fp-swarm0
NET=198.18.232
HOST_IP="$NET.1"
CIDR="$NET.0/24"
NODES=(1 2 3)
CHAIN=FP-SWARM
REGISTRY="$HOST_IP:5000"
REGISTRY_DIR="$LAB_DIR/registry"
CERT_DIR="$REGISTRY_DIR/tls"
CGROUP=fly-potato-swarm
CG_CONTROLLERS=(cpu cpuacct pids)
MAIN_DOCKER_HOST="${FP_SWARM_SOURCE_DOCKER_HOST:-unix:///var/run/docker.sock}"
CPUS="${FP_SWARM_CPUS:-1}"
WAIT="${FP_SWARM_WAIT:-90}"
SSH_DIR="$LAB_DIR/ssh"
SSH_USER=root
SSH_KEY="$SSH_DIR/operator_ed25519"
KNOWN_HOSTS="$SSH_DIR/known_hosts"
SSHD_PID="$RUN_DIR/sshd.pid"
TUNNEL_DIR="$RUN_DIR/tunnels"

say() { printf 'swarm-lab: %s\n' "$*" >&2; }
trace() { [[ -z "${FP_SWARM_DEBUG:-}" ]] || printf 'swarm-lab: %s %s\n' "$(date +%T.%N | cut -c1-12)" "$*" >&2; }
fail() { printf 'swarm-lab: %s\n' "$*" >&2; exit 1; }

netns() { echo "fp-swarm-$1"; }
veth() { echo "fp-swarm-v$1"; }
addr() { echo "$NET.$((10 + $1))"; }
sock() { echo "$RUN_DIR/node$1.sock"; }
node_dir() { echo "$LAB_DIR/node$1"; }
ndocker() { local n="$1"; shift; DOCKER_HOST="unix://$(sock "$n")" docker "$@"; }

node_number() {
    case "$1" in
        1|node1|fp-swarm-1) echo 1 ;;
        2|node2|fp-swarm-2) echo 2 ;;
        3|node3|fp-swarm-3) echo 3 ;;
        *) fail "unknown node '$1' (node1, node2 or node3)" ;;
    esac
}

preflight() {
    [[ "$(id -u)" == 0 ]] || fail "must run as root (network namespaces, a bridge, iptables and dockerd)"
    local missing=()
    for c in ip iptables nsenter unshare dockerd docker openssl curl; do
        command -v "$c" >/dev/null || missing+=("$c")
    done
    [[ ${#missing[@]} -eq 0 ]] || fail "missing commands: ${missing[*]} (scripts/deps/host.sh, make engine)"
    if [[ ! -x /usr/bin/docker-registry ]] || ! command -v skopeo >/dev/null; then
        bash "$ROOT/scripts/deps/registry.sh" >&2
    fi
    if [[ ! -x /usr/sbin/sshd ]] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
        bash "$ROOT/scripts/deps/sshd.sh" >&2
    fi
}

# The daemons are started with fd 8 closed: they must not inherit (and hold) this lock.
lock() {
    mkdir -p "$(dirname "$LOCK")"
    exec 8>"$LOCK"
    flock -w 600 8 || fail "another swarm-lab.sh holds $LOCK"
}

# --- cgroups (v1 here; v2 handled too) -----------------------------------------------------------
cgroup_v2() { [[ -f /sys/fs/cgroup/cgroup.controllers ]]; }

cgroup_setup() {
    local quota=$(awk -v c="$CPUS" 'BEGIN { printf "%d", c * 100000 }')
    if cgroup_v2; then
        mkdir -p "/sys/fs/cgroup/$CGROUP/daemons"
        echo "+cpu +pids" > "/sys/fs/cgroup/$CGROUP/cgroup.subtree_control" 2>/dev/null || true
        echo "$quota 100000" > "/sys/fs/cgroup/$CGROUP/cpu.max" 2>/dev/null || say "cannot cap CPU (cpu.max)"
        return
    fi
    for c in "${CG_CONTROLLERS[@]}"; do
        [[ -d "/sys/fs/cgroup/$c" ]] && mkdir -p "/sys/fs/cgroup/$c/$CGROUP/daemons"
    done
    if [[ -f "/sys/fs/cgroup/cpu/$CGROUP/cpu.cfs_quota_us" ]]; then
        echo 100000 > "/sys/fs/cgroup/cpu/$CGROUP/cpu.cfs_period_us"
        echo "$quota" > "/sys/fs/cgroup/cpu/$CGROUP/cpu.cfs_quota_us"
    else
        say "cannot cap CPU (no cpu controller)"
    fi
}

# Shell code that moves the current shell ($$) into the lab's daemon cgroup.
cgroup_join_code() {
    if cgroup_v2; then
        echo "echo \$\$ > /sys/fs/cgroup/$CGROUP/daemons/cgroup.procs;"
    else
        local c
        for c in "${CG_CONTROLLERS[@]}"; do
            echo "[ -d /sys/fs/cgroup/$c/$CGROUP/daemons ] && echo \$\$ > /sys/fs/cgroup/$c/$CGROUP/daemons/cgroup.procs;"
        done
    fi
}

# Every process in the lab's cgroups: the daemons, shims and containers the lab started.
cgroup_pids() {
    local base
    if cgroup_v2; then base="/sys/fs/cgroup/$CGROUP"; else base="/sys/fs/cgroup/pids/$CGROUP"; fi
    [[ -d "$base" ]] || return 0
    find "$base" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}

cgroup_remove() {
    local dirs=("/sys/fs/cgroup/$CGROUP")
    cgroup_v2 || dirs=(/sys/fs/cgroup/*/"$CGROUP")
    for d in "${dirs[@]}"; do
        [[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    return 0
}

# --- network -------------------------------------------------------------------------------------
hook_chain() { if iptables -S DOCKER-USER >/dev/null 2>&1; then echo DOCKER-USER; else echo FORWARD; fi; }

network_up() {
    ip link add "$BRIDGE" type bridge
    ip addr add "$HOST_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    iptables -N "$CHAIN"
    iptables -A "$CHAIN" -s "$CIDR" -d "$CIDR" -j ACCEPT
    iptables -A "$CHAIN" -j RETURN
    iptables -I "$(hook_chain)" 1 -i "$BRIDGE" -o "$BRIDGE" -j "$CHAIN"
    local n ns
    for n in "${NODES[@]}"; do
        ns="$(netns "$n")"
        ip netns add "$ns"
        ip link add "$(veth "$n")" type veth peer name eth0 netns "$ns"
        ip link set "$(veth "$n")" master "$BRIDGE" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$(addr "$n")/24" dev eth0
        ip -n "$ns" link set eth0 up
        # Nothing leaves the lab: the host forwards only lab-to-lab traffic (chain above).
        ip -n "$ns" route add default via "$HOST_IP"
    done
}

network_down() {
    local n c
    for n in "${NODES[@]}"; do
        ip link del "$(veth "$n")" 2>/dev/null || true
        ip netns del "$(netns "$n")" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    for c in DOCKER-USER FORWARD; do
        while iptables -D "$c" -i "$BRIDGE" -o "$BRIDGE" -j "$CHAIN" 2>/dev/null; do :; done
    done
    iptables -F "$CHAIN" 2>/dev/null || true
    iptables -X "$CHAIN" 2>/dev/null || true
}

# --- TLS and registry ----------------------------------------------------------------------------
tls_up() {
    mkdir -p "$CERT_DIR"
    (
        cd "$CERT_DIR"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
            -subj "/CN=fly-potato swarm lab CA" -keyout ca.key -out ca.crt \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj "/CN=$HOST_IP" -keyout registry.key -out registry.csr
        printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' \
            "$HOST_IP" > registry.ext
        openssl x509 -req -in registry.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
            -extfile registry.ext -out registry.crt
        chmod 600 ca.key registry.key
    ) >/dev/null 2>&1 || fail "openssl could not make the lab CA and registry certificate"
    # skopeo and curl read this directory (ca.crt) for the registry.
    mkdir -p "$REGISTRY_DIR/client-certs"
    cp "$CERT_DIR/ca.crt" "$REGISTRY_DIR/client-certs/ca.crt"
}

registry_up() {
    mkdir -p "$REGISTRY_DIR/data"
    cat > "$REGISTRY_DIR/config.yml" <<EOF
version: 0.1
log:
  level: info
  fields:
    service: fly-potato-swarm-registry
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REGISTRY
  tls:
    certificate: $CERT_DIR/registry.crt
    key: $CERT_DIR/registry.key
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    setsid sh -c "$(cgroup_join_code) exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /usr/bin/docker-registry serve '$REGISTRY_DIR/config.yml'" \
        >>"$RUN_DIR/registry.log" 2>&1 </dev/null 8>&- &
    echo $! > "$RUN_DIR/registry.pid"
    local _
    for _ in $(seq 1 "$WAIT"); do
        registry_ok && return 0
        kill -0 "$(cat "$RUN_DIR/registry.pid")" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 5 "$RUN_DIR/registry.log" >&2 || true
    fail "the registry did not answer on https://$REGISTRY/v2/ (log: $RUN_DIR/registry.log)"
}

registry_ok() {
    curl -fsS --max-time 3 --cacert "$REGISTRY_DIR/client-certs/ca.crt" "https://$REGISTRY/v2/" >/dev/null 2>&1
}

# --- node daemons --------------------------------------------------------------------------------
storage_driver() {
    if [[ -n "${FP_SWARM_STORAGE_DRIVER:-}" ]]; then echo "$FP_SWARM_STORAGE_DRIVER"
    elif grep -qw overlay /proc/filesystems && [[ "$(stat -f -c %T "$LAB_DIR" 2>/dev/null)" != overlayfs ]]; then echo overlay2
    else echo vfs
    fi
}

daemon_up() {
    local n="$1" dir ns driver
    dir="$(node_dir "$n")"
    ns="$(netns "$n")"
    driver="$(storage_driver)"
    mkdir -p "$dir/docker" "$dir/etc-docker/certs.d/$REGISTRY" "$RUN_DIR/node$n"
    cp "$CERT_DIR/ca.crt" "$dir/etc-docker/certs.d/$REGISTRY/ca.crt"
    cat > "$dir/daemon.json" <<EOF
{
  "hosts": ["unix://$(sock "$n")"],
  "data-root": "$dir/docker",
  "exec-root": "$RUN_DIR/node$n",
  "pidfile": "$RUN_DIR/node$n.pid",
  "storage-driver": "$driver",
  "bip": "172.31.$((10 + n)).1/24",
  "cgroup-parent": "/$CGROUP/node$n",
  "log-driver": "json-file",
  "log-opts": {"max-size": "1m", "max-file": "2"},
  "max-concurrent-downloads": 2,
  "max-concurrent-uploads": 2,
  "labels": ["fly-potato.lab=swarm", "fly-potato.node=node$n"]
}
EOF
    # nsenter --net keeps the host's /sys (ip netns exec would remount it and lose the cgroups);
    # the private mount namespace gives this dockerd its own /etc/docker (certs.d, key.json) and keeps
    # its mounts off the host; slave propagation still lets host unmounts through.
    setsid nsenter --net="/var/run/netns/$ns" -- \
        unshare --mount --uts --propagation slave -- \
        sh -c "$(cgroup_join_code) hostname '$ns' && mount --bind '$dir/etc-docker' /etc/docker \
               && exec dockerd --config-file '$dir/daemon.json'" \
        >>"$dir/node$n.log" 2>&1 </dev/null 8>&- &
    echo $! > "$RUN_DIR/node$n.launcher.pid"
}

daemon_wait() {
    local n="$1" _
    for _ in $(seq 1 $((WAIT * 2))); do
        ndocker "$n" info >/dev/null 2>&1 && return 0
        kill -0 "$(cat "$RUN_DIR/node$n.launcher.pid")" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 15 "$(node_dir "$n")/node$n.log" >&2 || true
    fail "dockerd of node$n did not answer on $(sock "$n") (log: $(node_dir "$n")/node$n.log)"
}

swarm_up() {
    ndocker 1 swarm init --advertise-addr "$(addr 1)" --listen-addr "$(addr 1):2377" \
        --default-addr-pool 10.232.0.0/16 --task-history-limit 2 >/dev/null
    local token n
    token="$(ndocker 1 swarm join-token -q worker)"
    for n in 2 3; do
        ndocker "$n" swarm join --token "$token" --advertise-addr "$(addr "$n")" \
            --listen-addr "$(addr "$n"):2377" "$(addr 1):2377" >/dev/null
    done
    ndocker 1 node update --label-add fly-potato.role=data "$(netns 1)" >/dev/null
    for n in 2 3; do
        ndocker 1 node update --label-add fly-potato.role=edge "$(netns "$n")" >/dev/null
    done
    # Without IPVS the ingress routing mesh cannot work here; without its network a service that asks
    # for it is refused at once instead of publishing nothing, and each dockerd stops 5 s sooner.
    if [[ "$(kernel_features)" == *"ipvs=no"* ]]; then
        echo y | ndocker 1 network rm ingress >/dev/null 2>&1 || say "could not remove the ingress network"
    fi
    local _
    for _ in $(seq 1 "$WAIT"); do
        [[ "$(ndocker 1 node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$')" == 3 ]] && return 0
        sleep 1
    done
    fail "the three nodes did not all become Ready"
}

healthy() {
    [[ -S "$(sock 1)" ]] || return 1
    registry_ok || return 1
    local n
    for n in "${NODES[@]}"; do
        [[ "$(ndocker "$n" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" == active ]] || return 1
    done
    [[ "$(ndocker 1 node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$')" == 3 ]]
}

# --- operator tunnel: sshd in the manager's namespace -------------------------------------------
# The platform publishes Postgres and Keycloak on the manager's 127.0.0.1 only; operators and the Pulumi
# providers reach them through `ssh -L` to the manager, as here. The lab's key may do nothing else.
sshd_ok() {
    [[ -f "$SSHD_PID" ]] && kill -0 "$(cat "$SSHD_PID")" 2>/dev/null || return 1
    [[ "$(timeout 3 bash -c "exec 3<>/dev/tcp/$(addr 1)/22 && head -c 8 <&3" 2>/dev/null)" == SSH-2.0- ]]
}

ssh_keys() {
    mkdir -p "$SSH_DIR"
    chmod 700 "$SSH_DIR"
    [[ -f "$SSH_DIR/ssh_host_ed25519_key" ]] \
        || ssh-keygen -q -t ed25519 -N '' -C "fly-potato swarm lab fp-swarm-1" -f "$SSH_DIR/ssh_host_ed25519_key"
    [[ -f "$SSH_KEY" ]] || ssh-keygen -q -t ed25519 -N '' -C "fly-potato swarm lab operator" -f "$SSH_KEY"
    chmod 600 "$SSH_KEY" "$SSH_DIR/ssh_host_ed25519_key"
    # Local forwarding to the manager's loopback, nothing else: no shell or command (forced /bin/false), no pty,
    # no agent or X11 forwarding, no remote forwarding, no ~/.ssh/rc (restrict, then port-forwarding back).
    printf 'restrict,port-forwarding,permitopen="127.0.0.1:*",command="/bin/false" %s\n' \
        "$(cut -d' ' -f1,2 "$SSH_KEY.pub")" > "$SSH_DIR/authorized_keys"
    printf '%s %s\n' "$(addr 1)" "$(cut -d' ' -f1,2 "$SSH_DIR/ssh_host_ed25519_key.pub")" > "$KNOWN_HOSTS"
    chmod 600 "$SSH_DIR/authorized_keys"
    chmod 644 "$KNOWN_HOSTS"
    cat > "$SSH_DIR/sshd_config" <<CONF
# The swarm lab's sshd (scripts/swarm-lab.sh): in fp-swarm-1's network namespace, for the operator tunnel only.
ListenAddress $(addr 1):22
HostKey $SSH_DIR/ssh_host_ed25519_key
PidFile $SSHD_PID
AuthorizedKeysFile $SSH_DIR/authorized_keys
AuthorizedPrincipalsFile none
AllowUsers $SSH_USER
PermitRootLogin forced-commands-only
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
PermitEmptyPasswords no
UsePAM no
StrictModes yes
AllowTcpForwarding local
PermitOpen 127.0.0.1:*
GatewayPorts no
AllowStreamLocalForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
PermitTunnel no
PermitUserEnvironment no
PermitUserRC no
ForceCommand /bin/false
PrintMotd no
ClientAliveInterval 15
ClientAliveCountMax 3
MaxStartups 10:30:60
LogLevel VERBOSE
CONF
}

ssh_up() {
    ssh_keys
    # The privilege separation directory Debian's sshd is built with (the packaged service would make it).
    if [[ ! -d /run/sshd ]]; then
        mkdir -m 755 /run/sshd
        touch "$RUN_DIR/made-run-sshd"
    fi
    local err
    err="$(/usr/sbin/sshd -t -f "$SSH_DIR/sshd_config" 2>&1)" || fail "the lab's sshd_config is refused: $err"
    rm -f "$SSHD_PID"
    setsid nsenter --net="/var/run/netns/$(netns 1)" -- \
        sh -c "$(cgroup_join_code) exec /usr/sbin/sshd -D -f '$SSH_DIR/sshd_config' -E '$SSH_DIR/sshd.log'" \
        >>"$SSH_DIR/sshd.log" 2>&1 </dev/null 8>&- &
    echo $! > "$RUN_DIR/sshd.launcher.pid"
    local _
    for _ in $(seq 1 $((WAIT * 5))); do
        sshd_ok && return 0
        kill -0 "$(cat "$RUN_DIR/sshd.launcher.pid")" 2>/dev/null || break
        sleep 0.2
    done
    tail -n 5 "$SSH_DIR/sshd.log" >&2 || true
    fail "the lab's sshd did not answer on $(addr 1):22 (log: $SSH_DIR/sshd.log)"
}

sshd_down() {
    local f
    for f in "$SSHD_PID" "$RUN_DIR/sshd.launcher.pid"; do
        [[ -f "$f" ]] && stop_pid "$(cat "$f")" 10
    done
    rm -f "$SSHD_PID" "$RUN_DIR/sshd.launcher.pid"
    if [[ -f "$RUN_DIR/made-run-sshd" ]]; then
        rmdir /run/sshd 2>/dev/null || true
        rm -f "$RUN_DIR/made-run-sshd"
    fi
}

# The client options of the tunnel: the lab's key only, the lab's known_hosts only, no prompt.
ssh_options() {
    echo "-i $SSH_KEY -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes" \
         "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=$KNOWN_HOSTS -o GlobalKnownHostsFile=/dev/null"
}

# A tunnel is one `ssh -N -f` process; TUNNEL_DIR/PID holds the LOCAL:REMOTE pairs it forwards.
tunnel_alive() {  # tunnel_alive PID: that pid is still one of the lab's ssh clients
    local pid="$1"
    kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-i $SSH_KEY "
}

tunnels() {  # the live tunnels' records (dead ones removed)
    local f
    [[ -d "$TUNNEL_DIR" ]] || return 0
    for f in "$TUNNEL_DIR"/*; do
        [[ -f "$f" ]] || continue
        if tunnel_alive "${f##*/}"; then echo "$f"; else rm -f "$f"; fi
    done
}

tunnels_stop() {
    local f
    for f in $(tunnels); do stop_pid "${f##*/}" 5; rm -f "$f"; done
}

# --- commands ------------------------------------------------------------------------------------
cmd_up() {
    preflight
    lock
    if healthy; then
        if sshd_ok; then
            say "already up"
        else
            ssh_up
            say "already up; started the lab's sshd"
        fi
        cmd_status
        return 0
    fi
    local t0=$SECONDS
    teardown quiet   # leftovers of a half-built or crashed lab
    mkdir -p "$LAB_DIR" "$RUN_DIR"
    chmod 700 "$LAB_DIR"
    cgroup_setup
    network_up
    tls_up
    registry_up
    local n
    for n in "${NODES[@]}"; do daemon_up "$n"; done
    for n in "${NODES[@]}"; do daemon_wait "$n"; done
    swarm_up
    ssh_up
    say "up in $((SECONDS - t0)) s (storage driver $(storage_driver), CPU cap ${CPUS})"
    cmd_status
}

stop_pid() {  # stop_pid PID [SECONDS]: TERM, wait, KILL
    local pid="$1" wait="${2:-20}" _
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 $((wait * 5))); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
}

teardown() {
    local n pid f quiet="${1:-}" group
    # The operator tunnels and the lab's sshd, by their pids.
    tunnels_stop
    sshd_down
    # The node daemons and the registry, all together (each dockerd stops its containers on the way out).
    for group in "1 2 3 registry"; do
        for n in $group; do
            for f in "$RUN_DIR/node$n.pid" "$RUN_DIR/node$n.launcher.pid" "$RUN_DIR/$n.pid"; do
                [[ -f "$f" ]] && { pid="$(cat "$f")"; [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true; }
            done
        done
        for n in $group; do
            for f in "$RUN_DIR/node$n.pid" "$RUN_DIR/node$n.launcher.pid" "$RUN_DIR/$n.pid"; do
                [[ -f "$f" ]] && stop_pid "$(cat "$f")" 30
            done
            trace "stopped $n"
        done
    done
    # Whatever is left in the lab's cgroups (shims, containers, a daemon whose pidfile was lost).
    local left
    left="$(cgroup_pids)"
    if [[ -n "$left" ]]; then
        [[ -n "$quiet" ]] || say "stopping leftover lab processes: $(echo $left)"
        kill -KILL $left 2>/dev/null || true
        sleep 0.5
    fi
    # Any process still inside a lab namespace is the lab's too.
    for n in "${NODES[@]}"; do
        if ip netns list 2>/dev/null | grep -qw "$(netns "$n")"; then
            left="$(ip netns pids "$(netns "$n")" 2>/dev/null || true)"
            [[ -n "$left" ]] && { kill -KILL $left 2>/dev/null || true; sleep 0.3; }
        fi
    done
    trace "leftover processes gone"
    network_down
    trace "network removed"
    cgroup_remove
    # Mounts are made in the daemons' private mount namespaces; refuse to rm through one that leaked.
    local mnt
    for mnt in $(awk -v a="$LAB_DIR" -v b="$RUN_DIR" '$5 ~ "^"a || $5 ~ "^"b { print $5 }' /proc/self/mountinfo | sort -r); do
        umount -l "$mnt" 2>/dev/null || true
    done
    [[ -f "$RUN_DIR/made-var-lib-containers" ]] && rm -rf /var/lib/containers
    rm -rf "$LAB_DIR" "$RUN_DIR"
}

cmd_down() {
    [[ "$(id -u)" == 0 ]] || fail "must run as root"
    lock
    local t0=$SECONDS
    teardown
    rm -f "$LOCK"
    say "down in $((SECONDS - t0)) s"
}

# What the swarm may rely on in this kernel: IPVS carries service VIPs and the ingress routing mesh;
# ESP (IPsec) carries encrypted overlays. Without them use endpoint mode dnsrr, host-mode publishing and
# unencrypted overlays (on this lab they fail silently: tasks on different nodes cannot talk).
kernel_features() {
    local config ipvs=unknown esp=unknown
    if [[ -r /proc/config.gz ]]; then
        config="$(zcat /proc/config.gz)"
        if grep -Eq '^CONFIG_IP_VS=(y|m)' <<<"$config"; then ipvs=yes; else ipvs=no; fi
        if grep -Eq '^CONFIG_INET_ESP=(y|m)' <<<"$config"; then esp=yes; else esp=no; fi
    fi
    [[ -d /proc/sys/net/ipv4/vs ]] && ipvs=yes
    echo "kernel: ipvs=$ipvs (service VIPs, ingress mesh) esp=$esp (encrypted overlays)"
}

cmd_status() {
    local ok=0 n
    if [[ -S "$(sock 1)" ]] && ndocker 1 node ls >/dev/null 2>&1; then
        ndocker 1 node ls --format '{{.Hostname}}' | while read -r h; do
            ndocker 1 node inspect "$h" --format \
                '{{.Description.Hostname}}  {{.Spec.Role}}  {{.Status.State}}  {{.Spec.Availability}}  {{.Status.Addr}}  role={{index .Spec.Labels "fly-potato.role"}}'
        done
    else
        echo "swarm: not up"; ok=1
    fi
    for n in "${NODES[@]}"; do
        if ndocker "$n" info >/dev/null 2>&1; then
            echo "node$n: DOCKER_HOST=unix://$(sock "$n") ($(ndocker "$n" info --format '{{.Swarm.LocalNodeState}}, {{.Driver}}'))"
        else
            echo "node$n: down"; ok=1
        fi
    done
    if registry_ok; then echo "registry: https://$REGISTRY (CA $REGISTRY_DIR/client-certs/ca.crt)"
    else echo "registry: down"; ok=1
    fi
    if sshd_ok; then echo "sshd: $SSH_USER@$(addr 1):22 in $(netns 1) (pid $(cat "$SSHD_PID"), key $SSH_KEY)"
    else echo "sshd: down"; ok=1
    fi
    local t
    for t in $(tunnels); do echo "tunnel: pid ${t##*/}, LOCAL:REMOTE $(cat "$t")"; done
    kernel_features
    return "$ok"
}

cmd_env() {
    [[ $# -eq 1 ]] || fail "usage: swarm-lab.sh env NODE"
    echo "DOCKER_HOST=unix://$(sock "$(node_number "$1")")"
}

# push IMAGE…: copied from the main engine (docker-daemon:) to the registry by skopeo, so the main
# engine's configuration and tags stay untouched; each line printed is REGISTRY/REPO@sha256:DIGEST.
cmd_push() {
    [[ $# -ge 1 ]] || fail "usage: swarm-lab.sh push IMAGE…"
    registry_ok || fail "the registry is not up (scripts/swarm-lab.sh up)"
    local image repo digestfile t0
    mkdir -p "$REGISTRY_DIR/tmp"
    digestfile="$REGISTRY_DIR/tmp/digest"
    # The lab's own trust policy (accept anything: the digest printed is what gets pinned).
    echo '{"default": [{"type": "insecureAcceptAnything"}]}' > "$REGISTRY_DIR/skopeo-policy.json"
    # skopeo keeps a blob-info cache in /var/lib/containers/cache (saves re-compressing on a re-push);
    # when the lab is what creates that directory, `down` removes it again.
    [[ -e /var/lib/containers ]] || touch "$RUN_DIR/made-var-lib-containers"
    for image in "$@"; do
        repo="${image%@*}"
        [[ "${repo##*/}" == *:* ]] || repo="$repo:latest"
        t0=$(date +%s.%N)
        # One core, low priority: gzip of the layers is the cost.
        GOMAXPROCS=1 nice -n 10 skopeo --policy "$REGISTRY_DIR/skopeo-policy.json" --tmpdir "$REGISTRY_DIR/tmp" \
            copy --quiet --src-daemon-host "$MAIN_DOCKER_HOST" \
            --dest-cert-dir "$REGISTRY_DIR/client-certs" --digestfile "$digestfile" \
            "docker-daemon:$image" "docker://$REGISTRY/$repo" >&2 \
            || fail "skopeo could not copy $image into $REGISTRY"
        echo "$REGISTRY/${repo%:*}@$(cat "$digestfile")"
        say "pushed $image in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
    done
}

# stop-node NODE: that node's dockerd (TERM, then KILL after 30 s) and its containerd, by pid, as `down`
# does; its namespace and address stay (a connection to it is refused, as to a machine whose engine died).
cmd_stop_node() {
    [[ $# -eq 1 ]] || fail "usage: swarm-lab.sh stop-node NODE"
    local n f pid t0=$SECONDS
    n="$(node_number "$1")"
    lock
    for f in "$RUN_DIR/node$n.pid" "$RUN_DIR/node$n.launcher.pid" "$RUN_DIR/node$n/containerd/containerd.pid"; do
        [[ -f "$f" ]] && { pid="$(cat "$f")"; stop_pid "$pid" 30; }
    done
    rm -f "$RUN_DIR/node$n.pid" "$RUN_DIR/node$n.launcher.pid" "$RUN_DIR/node$n/containerd/containerd.pid"
    ! ndocker "$n" info >/dev/null 2>&1 || fail "dockerd of node$n still answers"
    say "node$n stopped in $((SECONDS - t0)) s"
}

# start-node NODE: its dockerd again (same data, so same swarm identity); waits until the manager sees it Ready.
cmd_start_node() {
    [[ $# -eq 1 ]] || fail "usage: swarm-lab.sh start-node NODE"
    local n t0=$SECONDS _
    n="$(node_number "$1")"
    lock
    [[ -d "$(node_dir "$n")" ]] || fail "the lab is not up (scripts/swarm-lab.sh up)"
    if ! ndocker "$n" info >/dev/null 2>&1; then
        daemon_up "$n"
        daemon_wait "$n"
    fi
    for _ in $(seq 1 "$WAIT"); do
        if [[ "$(ndocker 1 node inspect "$(netns "$n")" --format '{{.Status.State}}' 2>/dev/null)" == ready ]]; then
            say "node$n ready in $((SECONDS - t0)) s"
            return 0
        fi
        sleep 1
    done
    fail "node$n did not become Ready"
}

# tunnel LOCAL:REMOTE…: one background `ssh -N -f` forwarding 127.0.0.1:LOCAL here to the manager's
# 127.0.0.1:REMOTE; a pair a lab tunnel already forwards is left as it is. Silent on success.
cmd_tunnel() {
    [[ $# -ge 1 ]] || fail "usage: swarm-lab.sh tunnel LOCAL:REMOTE [LOCAL:REMOTE…]"
    local spec local_port remote_port f pair held pid err forwards=() wanted=()
    for spec in "$@"; do
        [[ "$spec" =~ ^([0-9]{1,5}):([0-9]{1,5})$ ]] \
            && (( BASH_REMATCH[1] >= 1 && BASH_REMATCH[1] <= 65535 && BASH_REMATCH[2] >= 1 && BASH_REMATCH[2] <= 65535 )) \
            || fail "'$spec' is not LOCAL:REMOTE (two TCP ports, e.g. 15432:5432)"
    done
    lock
    sshd_ok || fail "the lab's sshd does not answer on $(addr 1):22 (scripts/swarm-lab.sh up)"
    mkdir -p "$TUNNEL_DIR"
    for spec in "$@"; do
        local_port="$((10#${spec%%:*}))" remote_port="$((10#${spec##*:}))"
        held=""
        for f in $(tunnels); do
            for pair in $(cat "$f"); do
                [[ "${pair%%:*}" == "$local_port" ]] && held="$pair"
            done
        done
        for pair in "${wanted[@]}"; do
            [[ "${pair%%:*}" == "$local_port" ]] && held="$pair"
        done
        if [[ "$held" == "$local_port:$remote_port" ]]; then continue
        elif [[ -n "$held" ]]; then
            fail "127.0.0.1:$local_port already forwards to the manager's port ${held##*:} (scripts/swarm-lab.sh untunnel first)"
        fi
        [[ -z "$(ss -Hltn "sport = :$local_port" 2>/dev/null)" ]] \
            || fail "port $local_port is already in use on this host: choose another LOCAL port"
        wanted+=("$local_port:$remote_port")
        forwards+=(-L "127.0.0.1:$local_port:127.0.0.1:$remote_port")
    done
    [[ ${#wanted[@]} -gt 0 ]] || return 0
    # ssh forks into the background once it is authenticated and listens on every local port (it exits
    # instead when one cannot be bound: ExitOnForwardFailure); the lab's cgroup holds it.
    # shellcheck disable=SC2046  # the options are split on purpose (lab paths have no spaces)
    if ! err="$(sh -c "$(cgroup_join_code) exec \"\$@\"" tunnel \
            ssh -F /dev/null -N -f $(ssh_options) \
            -o ExitOnForwardFailure=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=3 \
            "${forwards[@]}" "$SSH_USER@$(addr 1)" 2>&1 >/dev/null </dev/null 8>&-)"; then
        fail "could not open the tunnel ${wanted[*]} to $SSH_USER@$(addr 1): $(tail -n 2 <<<"$err" | tr '\n' ' ' | sed 's/ *$//')"
    fi
    local_port="${wanted[0]%%:*}"
    pid="$(ss -Hltnp "src 127.0.0.1 and sport = :$local_port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)"
    if [[ -z "$pid" ]] || ! tunnel_alive "$pid"; then
        fail "the tunnel ${wanted[*]} was opened but its ssh process was not found on 127.0.0.1:$local_port"
    fi
    echo "${wanted[*]}" > "$TUNNEL_DIR/$pid"
}

cmd_untunnel() {
    [[ $# -eq 0 ]] || fail "usage: swarm-lab.sh untunnel"
    lock
    tunnels_stop
}

# ssh-config: the options of the operator tunnel, for `ssh -N -L 127.0.0.1:L:127.0.0.1:R $(… ssh-config)`.
cmd_ssh_config() {
    [[ $# -eq 0 ]] || fail "usage: swarm-lab.sh ssh-config"
    [[ -f "$SSH_KEY" && -f "$KNOWN_HOSTS" ]] || fail "the lab's SSH key is not there (scripts/swarm-lab.sh up)"
    echo "$(ssh_options) $SSH_USER@$(addr 1)"
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    status) shift; cmd_status "$@" ;;
    env) shift; cmd_env "$@" ;;
    push) shift; cmd_push "$@" ;;
    stop-node) shift; cmd_stop_node "$@" ;;
    start-node) shift; cmd_start_node "$@" ;;
    tunnel) shift; cmd_tunnel "$@" ;;
    untunnel) shift; cmd_untunnel "$@" ;;
    ssh-config) shift; cmd_ssh_config "$@" ;;
    *) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
