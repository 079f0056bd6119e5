#!/usr/bin/env bash
# Build every image the stacks use, locally, without a container registry (`make images`).
#
#   images/build.sh                 build what is missing or whose inputs changed
#   images/build.sh NAME...         only these (and what they are built on), e.g. `postgis keycloak`
#   images/build.sh --force [NAME…] rebuild even when the inputs are unchanged
#   images/build.sh --manifest      print images/manifest.json (service → image, local id)
#   images/build.sh --list          print the image names and references
#   images/build.sh --oauth2-proxy-binary  print the path of the oauth2-proxy the image carries, built once
#
# Inputs of every image (its directory under images/, downloaded artifacts, the id of the
# image it is built on, versions) are hashed into the label org.flypotato.inputs; an image whose
# label matches is skipped, so a re-run takes seconds. See docs/images.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGES_DIR="$ROOT/images"
MANIFEST="$IMAGES_DIR/manifest.json"
CACHE_DIR="${FLY_POTATO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fly-potato}/images"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

# --- what we build (the one place where image names, versions and sources are decided) ----------
KEYCLOAK_VERSION=26.7.3            # org.keycloak:keycloak-quarkus-dist (Maven Central)
OAUTH2_PROXY_VERSION=7.8.1         # github.com/oauth2-proxy/oauth2-proxy/v7 (Go module proxy)
# The Debian packages' upstream versions; each Dockerfile refuses to build if Debian moved on.
NGINX_VERSION=1.22.1
PROMETHEUS_VERSION=2.42.0
ALERTMANAGER_VERSION=0.25.0
NODE_EXPORTER_VERSION=1.5.0
POSTGRES_EXPORTER_VERSION=0.11.1
BLACKBOX_EXPORTER_VERSION=0.23.0
SQL_EXPORTER_VERSION=0.4.5
POSTGRES_MAJOR=15
POSTGIS_MAJOR=3
# The backend and backup images carry the project's code: they take its version (pyproject.toml).
PROJECT_VERSION="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$ROOT/pyproject.toml" 2>/dev/null | head -n 1)"
PROJECT_VERSION="${PROJECT_VERSION:-0.0.0}"

ORDER=(base-bookworm base-trixie python postgis nginx prometheus alertmanager node-exporter
       postgres-exporter blackbox-exporter sql-exporter keycloak oauth2-proxy backup backend)
declare -A REF=(
    [base-bookworm]=fly-potato/base:bookworm
    [base-trixie]=fly-potato/base:trixie
    [python]=fly-potato/python:3.11
    [postgis]=fly-potato/postgis:${POSTGRES_MAJOR}-${POSTGIS_MAJOR}
    [nginx]=fly-potato/nginx:$NGINX_VERSION
    [prometheus]=fly-potato/prometheus:$PROMETHEUS_VERSION
    [alertmanager]=fly-potato/alertmanager:$ALERTMANAGER_VERSION
    [node-exporter]=fly-potato/node-exporter:$NODE_EXPORTER_VERSION
    [postgres-exporter]=fly-potato/postgres-exporter:$POSTGRES_EXPORTER_VERSION
    [blackbox-exporter]=fly-potato/blackbox-exporter:$BLACKBOX_EXPORTER_VERSION
    [sql-exporter]=fly-potato/sql-exporter:$SQL_EXPORTER_VERSION
    [keycloak]=fly-potato/keycloak:$KEYCLOAK_VERSION
    [oauth2-proxy]=fly-potato/oauth2-proxy:$OAUTH2_PROXY_VERSION
    [backup]=fly-potato/backup:$PROJECT_VERSION
    [backend]=fly-potato/backend:$PROJECT_VERSION
)
declare -A VERSION=(
    [base-bookworm]=12 [base-trixie]=13 [python]=3.11 [postgis]="${POSTGRES_MAJOR}-${POSTGIS_MAJOR}"
    [nginx]=$NGINX_VERSION [prometheus]=$PROMETHEUS_VERSION [alertmanager]=$ALERTMANAGER_VERSION
    [node-exporter]=$NODE_EXPORTER_VERSION [postgres-exporter]=$POSTGRES_EXPORTER_VERSION
    [blackbox-exporter]=$BLACKBOX_EXPORTER_VERSION [sql-exporter]=$SQL_EXPORTER_VERSION
    [keycloak]=$KEYCLOAK_VERSION [oauth2-proxy]=$OAUTH2_PROXY_VERSION [backup]=$PROJECT_VERSION
    [backend]=$PROJECT_VERSION
)
# Upstream-versioned images are also tagged MAJOR and MAJOR.MINOR (prometheus:2, prometheus:2.42), so
# stack config may follow a series; the manifest and prod pins use the full tag and the image id.
ALIASED=(nginx prometheus alertmanager node-exporter postgres-exporter blackbox-exporter sql-exporter
         keycloak oauth2-proxy)
declare -A FROM=(
    [python]=base-bookworm [postgis]=base-bookworm [nginx]=base-bookworm [prometheus]=base-bookworm
    [alertmanager]=base-bookworm [node-exporter]=base-bookworm [postgres-exporter]=base-bookworm
    [blackbox-exporter]=base-bookworm [sql-exporter]=base-bookworm [oauth2-proxy]=base-bookworm
    [keycloak]=base-trixie [backup]=python [backend]=python
)
# Stack service → image (the keys of the stacks' image settings).
SERVICES=(postgres migration backend nginx keycloak oauth2_proxy prometheus alertmanager node_exporter
          postgres_exporter sql_exporter blackbox_exporter backup container_exporter)
declare -A SERVICE_IMAGE=(
    [postgres]=postgis [migration]=backend [backend]=backend [nginx]=nginx [keycloak]=keycloak
    [oauth2_proxy]=oauth2-proxy [prometheus]=prometheus [alertmanager]=alertmanager
    [node_exporter]=node-exporter [postgres_exporter]=postgres-exporter [sql_exporter]=sql-exporter
    [blackbox_exporter]=blackbox-exporter [backup]=backup
    [container_exporter]=backup  # a stdlib Python script; runs on the backup image's Python
)

# --- small helpers --------------------------------------------------------------------------------
T0=$SECONDS
log() { printf '%s\n' "$*"; }
die() { printf 'images: %s\n' "$*" >&2; exit 1; }
elapsed() { local s=$(( SECONDS - $1 )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
image_label() { docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }
image_size() { docker image inspect -f '{{.Size}}' "$1" 2>/dev/null | awk '{printf "%.0f MB", $1/1000000}'; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}
apt_install() {  # apt_install PACKAGE… — host tools the build needs
    log "      installing $* on the host (apt)…"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get -o DPkg::Lock::Timeout=900 -qq update >/dev/null
    as_root apt-get -o DPkg::Lock::Timeout=900 -qq install -y --no-install-recommends "$@" >/dev/null 2>&1 \
        || die "could not install $* with apt; install it and re-run"
}

# Hash a directory's file names, modes and contents (stable order).
hash_dir() {
    # shellcheck disable=SC2016  # the inner script expands its own "$f"
    (cd "$1" && find . \( -name __pycache__ -o -name '*.pyc' \) -prune -o -type f -print0 | LC_ALL=C sort -z \
        | xargs -0 -r sh -c 'for f; do printf "%s %s\n" "$(stat -c %a "$f")" "$f"; sha256sum < "$f"; done' _) \
        | sha256sum | cut -c1-64
}
hash_text() { printf '%s' "$*" | sha256sum | cut -c1-64; }

# Run a long command with its output in a log; print a heartbeat line every 30 s.
run_logged() {  # run_logged NAME LOGFILE CMD…
    local name=$1 logfile=$2; shift 2
    local start=$SECONDS
    "$@" >"$logfile" 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        if kill -0 "$pid" 2>/dev/null; then
            local last
            last="$(grep -E '^(Step [0-9]+/[0-9]+|I: )' "$logfile" 2>/dev/null | tail -n 1 | cut -c1-90)"
            log "      … $name $(elapsed "$start") ${last:+— $last}"
        fi
    done
    if ! wait "$pid"; then
        log "      $name failed; last lines of $logfile:"
        tail -n 25 "$logfile" | sed 's/^/      | /'
        return 1
    fi
}

# Proxy settings of the host (environment, else apt's) reach debootstrap and every RUN step.
PROXY_ARGS=()
setup_proxy() {
    local p="${http_proxy:-${HTTP_PROXY:-}}"
    if [ -z "$p" ] && command -v apt-config >/dev/null; then
        eval "$(apt-config shell p Acquire::http::Proxy)"
    fi
    if [ -n "$p" ]; then
        export http_proxy="$p"
        PROXY_ARGS+=(--build-arg "http_proxy=$p")
    fi
    local s="${https_proxy:-${HTTPS_PROXY:-}}"
    if [ -n "$s" ]; then PROXY_ARGS+=(--build-arg "https_proxy=$s"); fi
    if [ -n "${no_proxy:-${NO_PROXY:-}}" ]; then PROXY_ARGS+=(--build-arg "no_proxy=${no_proxy:-$NO_PROXY}"); fi
}

# --- artifacts fetched outside the Debian archive --------------------------------------------------
keycloak_dist() {  # prints the path of the Keycloak distribution tarball, downloading it once
    local file="$CACHE_DIR/dl/keycloak-quarkus-dist-$KEYCLOAK_VERSION.tar.gz"
    if [ ! -s "$file" ]; then
        command -v mvn >/dev/null || apt_install maven
        mkdir -p "$CACHE_DIR/dl"
        log "      downloading org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION (Maven)…" >&2
        # Maven resolves from its configured repositories (Central unless settings.xml says otherwise)
        # and -C fails on a checksum mismatch.
        mvn -B -q -C org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
            "-Dartifact=org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:tar.gz" \
            "-DoutputDirectory=$CACHE_DIR/dl" >"$CACHE_DIR/dl/keycloak-mvn.log" 2>&1 \
            || { tail -n 20 "$CACHE_DIR/dl/keycloak-mvn.log" >&2; die "Keycloak download failed"; }
    fi
    printf '%s\n' "$file"
}

oauth2_proxy_binary() {  # prints the path of a static oauth2-proxy built from its Go module, once
    local bin="$CACHE_DIR/bin/oauth2-proxy-v$OAUTH2_PROXY_VERSION"
    if [ ! -x "$bin" ]; then
        command -v go >/dev/null \
            || die "building oauth2-proxy needs Go ≥ 1.22 on PATH (install it, or run 'make toolchain')"
        local mod="github.com/oauth2-proxy/oauth2-proxy/v7" src
        log "      building $mod@v$OAUTH2_PROXY_VERSION (Go module proxy)…" >&2
        mkdir -p "$CACHE_DIR/bin" "$CACHE_DIR/src"
        # `go install mod@version` also reads the module's version list, which a proxy may refuse;
        # downloading the one version and building inside it needs only that version and go.sum.
        src="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$mod@v$OAUTH2_PROXY_VERSION" \
            | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
        [ -d "$src" ] || die "go mod download $mod@v$OAUTH2_PROXY_VERSION failed"
        rm -rf "$CACHE_DIR/src/oauth2-proxy"
        cp -r "$src" "$CACHE_DIR/src/oauth2-proxy" && chmod -R u+w "$CACHE_DIR/src/oauth2-proxy"
        (cd "$CACHE_DIR/src/oauth2-proxy" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
            -ldflags "-s -w -X $mod/pkg/version.VERSION=v$OAUTH2_PROXY_VERSION" -o "$bin.tmp" .) \
            >"$CACHE_DIR/bin/oauth2-proxy-build.log" 2>&1 \
            || { tail -n 20 "$CACHE_DIR/bin/oauth2-proxy-build.log" >&2; die "oauth2-proxy build failed"; }
        mv "$bin.tmp" "$bin"
    fi
    printf '%s\n' "$bin"
}

# --- build context staging --------------------------------------------------------------------------
# Each image builds from a copy of images/<name>/ (backup/Dockerfile for the backup image) plus what it needs from elsewhere, so the
# build context holds exactly the files that are hashed and nothing else.
stage_context() {  # stage_context NAME → prints the context directory
    local name=$1 ctx="$CACHE_DIR/ctx/$1"
    rm -rf "$ctx"; mkdir -p "$ctx"
    if [ "$name" = backup ]; then
        # The backup service's folder holds its image's Dockerfile beside the package it copies in.
        cp -a "$ROOT/backup/Dockerfile" "$ctx/"
    else
        cp -a "$IMAGES_DIR/$name/." "$ctx/"
    fi
    case "$name" in
        keycloak)
            # Unpacked on the host and copied in one layer (ADD + mv would store it twice).
            local dist tree="$CACHE_DIR/dl/keycloak-$KEYCLOAK_VERSION"
            dist="$(keycloak_dist)"
            if [ ! -f "$tree/bin/kc.sh" ]; then
                rm -rf "$tree.tmp"; mkdir -p "$tree.tmp"
                tar -xzf "$dist" -C "$tree.tmp" --strip-components=1 --no-same-owner
                rm -rf "$tree"; mv "$tree.tmp" "$tree"
            fi
            cp -al "$tree" "$ctx/keycloak" 2>/dev/null || cp -a "$tree" "$ctx/keycloak" ;;
        python)
            # Site-local CAs of the build host (e.g. a TLS-inspecting proxy in front of the package
            # index): pip inside dependent builds must trust what pip on the host trusts.
            mkdir -p "$ctx/site-ca"; : >"$ctx/site-ca/.keep"
            if [ "${FLY_POTATO_SITE_CA:-1}" != 0 ] && [ -d /usr/local/share/ca-certificates ]; then
                local n=0 crt
                while IFS= read -r -d '' crt; do
                    n=$((n + 1)); cp "$crt" "$ctx/site-ca/site-$n.crt"
                done < <(find /usr/local/share/ca-certificates -name '*.crt' -type f -print0 | LC_ALL=C sort -z)
            fi ;;
        oauth2-proxy)
            local bin; bin="$(oauth2_proxy_binary)"
            cp "$bin" "$ctx/oauth2-proxy" ;;
        backup)
            mkdir -p "$ctx/backup"
            (cd "$ROOT/backup" && find . \( -name __pycache__ -o -name '*.pyc' -o -name Dockerfile \) -prune -o -type f -print0 \
                | xargs -0 -r cp --parents -t "$ctx/backup") ;;
    esac
    printf '%s\n' "$ctx"
}

# --- the two kinds of build ------------------------------------------------------------------------
build_base() {  # build_base NAME SUITE
    local name=$1 suite=$2 ref=${REF[$1]} inputs
    inputs="$(hash_text "$suite $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR $(hash_dir "$IMAGES_DIR/base") \
        $(declare -f build_base debootstrap_rootfs)")"
    if up_to_date "$ref" "$inputs"; then return 0; fi
    command -v debootstrap >/dev/null || apt_install debootstrap
    [ -e "/usr/share/debootstrap/scripts/$suite" ] || apt_install debootstrap
    local rootfs="$CACHE_DIR/rootfs/$suite"
    run_logged "$name" "$CACHE_DIR/logs/$name.log" debootstrap_rootfs "$suite" "$rootfs" || return 1
    as_root tar --numeric-owner -C "$rootfs" -c . | docker import \
        --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        "${LABEL_CHANGES[@]}" --change "LABEL org.flypotato.inputs=$inputs" \
        - "$ref" >/dev/null
    as_root rm -rf "$rootfs"
}

debootstrap_rootfs() {  # debootstrap_rootfs SUITE DIR — minbase Debian, current security updates, slimmed
    local suite=$1 dir=$2
    as_root rm -rf "$dir"; mkdir -p "$(dirname "$dir")"
    as_root debootstrap --variant=minbase "$suite" "$dir" "$DEBIAN_MIRROR"
    # Overlay: dpkg path excludes, apt defaults, policy-rc.d, http-probe. Existing directories keep
    # their metadata.
    tar -C "$IMAGES_DIR/base/rootfs" --owner=0 --group=0 -c . | as_root tar -C "$dir" -x --no-overwrite-dir
    as_root sh -c "cat > '$dir/etc/apt/sources.list'" <<EOF
deb $DEBIAN_MIRROR $suite main
deb $DEBIAN_MIRROR $suite-updates main
deb $DEBIAN_SECURITY_MIRROR $suite-security main
EOF
    as_root mount -t proc proc "$dir/proc"
    local rc=0
    as_root chroot "$dir" sh -euxc '
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get -y upgrade
        apt-get -y autoremove --purge
        # Files dpkg now excludes were unpacked by debootstrap; drop them too.
        find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
        find /usr/share/doc -mindepth 1 -type d -empty -delete
        rm -rf /usr/share/man/* /usr/share/info/* /usr/share/locale/*/ /usr/share/lintian
        mkdir -p /usr/share/man/man1   # update-alternatives (e.g. Java) links its man pages here
        apt-get clean
        rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/*.log /var/log/apt/* /tmp/* /var/tmp/*
        : > /etc/machine-id
        rm -f /etc/hostname /etc/resolv.conf
    ' || rc=$?
    as_root umount "$dir/proc"
    return $rc
}

build_dockerfile() {  # build_dockerfile NAME
    local name=$1 ref=${REF[$1]} base ctx inputs dockerfile context extra=()
    base="${REF[${FROM[$name]}]}"
    [ -n "$(image_id "$base")" ] || die "$ref needs $base, which is missing"
    if [ "$name" = backend ]; then
        dockerfile="$ROOT/app/Dockerfile"
        [ -f "$dockerfile" ] || { log "      backend: app/Dockerfile does not exist yet"; SKIPPED+=("$name"); return 0; }
        context="$ROOT"
        # APP_UID: the backend's uid in components/catalog.py.
        extra=(--build-arg "BASE_IMAGE=$base" --build-arg "APP_UID=10020")
        inputs="$(hash_text "$(image_id "$base") ${extra[*]} $(backend_inputs)")"
    else
        ctx="$(stage_context "$name")"
        dockerfile="$ctx/Dockerfile"; context="$ctx"
        extra=(--build-arg "BASE=$base" --build-arg "VERSION=${VERSION[$name]}")
        inputs="$(hash_text "$(image_id "$base") ${extra[*]} $(hash_dir "$ctx")")"
    fi
    if up_to_date "$ref" "$inputs"; then return 0; fi
    # The classic builder: it needs no buildx plugin and these Dockerfiles use no BuildKit syntax.
    run_logged "$name" "$CACHE_DIR/logs/$name.log" env DOCKER_BUILDKIT=0 docker build \
        --force-rm --pull=false -f "$dockerfile" -t "$ref" "${extra[@]}" "${PROXY_ARGS[@]}" \
        "${LABEL_ARGS[@]}" --label "org.flypotato.inputs=$inputs" \
        --label "org.opencontainers.image.base.name=$base" "$context"
}

# The backend's inputs: app/Dockerfile and everything it copies from the repository (its COPY/ADD
# sources, minus what .dockerignore drops: caches).
backend_inputs() {
    local sources
    sources="$(awk 'toupper($1) ~ /^(COPY|ADD)$/ {
            n = 0; for (i = 2; i <= NF; i++) { if ($i ~ /^--/) { if ($i ~ /^--from/) { n = -1; break } continue } a[++n] = $i }
            for (i = 1; i < n; i++) print a[i]; delete a }' "$ROOT/app/Dockerfile" | sort -u)"
    {
        sha256sum < "$ROOT/app/Dockerfile"
        if [ -f "$ROOT/.dockerignore" ]; then sha256sum < "$ROOT/.dockerignore"; fi
        local src path
        for src in $sources; do
            src="${src%/}"; src="${src#./}"
            # Each source may be a glob (e.g. build/wheels*) naming files or directories.
            # shellcheck disable=SC2015  # no match is an empty list, whichever part failed
            for path in $(cd "$ROOT" && compgen -G "${src:-.}" || true); do
                (cd "$ROOT" && find "$path" \( -name __pycache__ -o -name '*.pyc' -o -name .git -o -name .venv \
                    -o -name '.env*' -o -name .secrets -o -name .pytest_cache -o -name .mypy_cache -o -name .ruff_cache \) \
                    -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
            done
        done
    } | sha256sum | cut -c1-64
}

alias_tags() {  # alias_tags NAME — point REPO:MAJOR and REPO:MAJOR.MINOR at the image
    local name=$1 n repo version
    for n in "${ALIASED[@]}"; do [ "$n" = "$name" ] || continue
        repo="${REF[$name]%:*}"; version="${VERSION[$name]}"
        if [ "${version%%.*}" != 0 ]; then docker tag "${REF[$name]}" "$repo:${version%%.*}"; fi
        docker tag "${REF[$name]}" "$repo:${version%.*}"
    done
}

up_to_date() {  # up_to_date REF INPUTS — true when REF exists with these inputs (and not --force)
    [ "$FORCE" = 0 ] && [ "$(image_label "$1" org.flypotato.inputs)" = "$2" ]
}

# --- manifest -----------------------------------------------------------------------------------------
write_manifest() {
    local tmp="$MANIFEST.tmp" first=1 svc name id
    {
        printf '{\n'
        for svc in "${SERVICES[@]}"; do
            name=${SERVICE_IMAGE[$svc]}
            id="$(image_id "${REF[$name]}")"
            [ $first = 1 ] || printf ',\n'
            first=0
            if [ -n "$id" ]; then
                printf '  "%s": {"image": "%s", "id": "%s"}' "$svc" "${REF[$name]}" "$id"
            else
                printf '  "%s": {"image": "%s", "id": null}' "$svc" "${REF[$name]}"
            fi
        done
        printf '\n}\n'
    } >"$tmp"
    mv "$tmp" "$MANIFEST"
}

# --- main ---------------------------------------------------------------------------------------------
FORCE=0
WANT=()
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --manifest)
            command -v docker >/dev/null && docker info >/dev/null 2>&1 && write_manifest
            [ -f "$MANIFEST" ] || die "no manifest yet: run images/build.sh"
            cat "$MANIFEST"; exit 0 ;;
        --oauth2-proxy-binary) oauth2_proxy_binary; exit 0 ;;
        --list) for n in "${ORDER[@]}"; do printf '%-18s %s\n' "$n" "${REF[$n]}"; done; exit 0 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $arg (see --help)" ;;
        *) [ -n "${REF[$arg]:-}" ] || die "unknown image '$arg'; one of: ${ORDER[*]}"; WANT+=("$arg") ;;
    esac
done

# Closure of the requested images over FROM, in build order.
declare -A SELECTED=()
select_image() { SELECTED[$1]=1; if [ -n "${FROM[$1]:-}" ]; then select_image "${FROM[$1]}"; fi; }
if [ ${#WANT[@]} -eq 0 ]; then for n in "${ORDER[@]}"; do SELECTED[$n]=1; done
else for n in "${WANT[@]}"; do select_image "$n"; done; fi
TODO=(); for n in "${ORDER[@]}"; do [ -n "${SELECTED[$n]:-}" ] && TODO+=("$n"); done

"$ROOT/scripts/docker-engine.sh" >/dev/null || exit 1
mkdir -p "$CACHE_DIR/logs"
setup_proxy
CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
SKIPPED=()

log "images: ${#TODO[@]} to check (logs: $CACHE_DIR/logs)"
i=0
for name in "${TODO[@]}"; do
    i=$((i + 1))
    start=$SECONDS
    LABEL_ARGS=(--label "org.opencontainers.image.title=${REF[$name]%%:*}"
                --label "org.opencontainers.image.version=${VERSION[$name]}"
                --label "org.opencontainers.image.vendor=fly-potato"
                --label "org.opencontainers.image.created=$CREATED")
    LABEL_CHANGES=(); for ((k = 1; k < ${#LABEL_ARGS[@]}; k += 2)); do
        LABEL_CHANGES+=(--change "LABEL ${LABEL_ARGS[$k]}"); done
    before="$(image_id "${REF[$name]}")"
    case "$name" in
        base-bookworm) build_base "$name" bookworm ;;
        base-trixie) build_base "$name" trixie ;;
        *) build_dockerfile "$name" ;;
    esac || { write_manifest; die "${REF[$name]} failed after $(elapsed "$start") (log: $CACHE_DIR/logs/$name.log)"; }
    after="$(image_id "${REF[$name]}")"
    if [ -n "$after" ]; then alias_tags "$name"; fi
    if [ -z "$after" ]; then state="not built"
    elif [ "$before" = "$after" ]; then state="up to date"
    else state="built"; fi
    printf '[%2d/%d] %-38s %-10s %6s  %7s  %s\n' "$i" "${#TODO[@]}" "${REF[$name]}" "$state" \
        "$(elapsed "$start")" "$(image_size "${REF[$name]}")" "${after:7:12}"
done
write_manifest
log "images: done in $(elapsed "$T0"); manifest: ${MANIFEST#"$ROOT"/}${SKIPPED[*]:+ (not built: ${SKIPPED[*]})}"
