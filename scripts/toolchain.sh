#!/usr/bin/env bash
# Provide the Pulumi CLI, its Python language host and the six resource plugins the stacks use, at
# exactly the versions of scripts/toolchain.lock (which requirements.txt's SDK pins match).
#
# Per component, in order of preference (see docs/toolchain.md):
#   1. the toolchain cache, when it already holds that version (no-op, seconds);
#   2. the official release download, when it answers within a few seconds;
#   3. a build: the CLI from its Go module through the Go module proxy; the language host and the
#      plugins from their upstream source archives (checksums of scripts/toolchain.lock verified first),
#      looked for in $FLY_POTATO_TOOLCHAIN_SOURCES, the cache's sources/ folder, or a vendor/ folder
#      beside the checkout or one of its parent folders.
# Writes $FLY_POTATO_TOOLCHAIN/manifest.tsv: component, version, source, sha256 of the binary.
#
# Usage: scripts/toolchain.sh [--verify] [--env]
#   --verify  run the smoke test (up/preview/policy/destroy of a tiny stack) even if it passed before
#   --env     only print the environment lines that put the toolchain on PATH
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCK=$REPO/scripts/toolchain.lock
TC=${FLY_POTATO_TOOLCHAIN:-$HOME/.cache/fly-potato/toolchain}
BIN=$TC/bin
export PULUMI_HOME=${FLY_POTATO_PULUMI_HOME:-$TC/pulumi-home}
VENV=${FLY_POTATO_VENV:-$REPO/.venv}
RELEASES=${FLY_POTATO_PULUMI_RELEASES:-https://get.pulumi.com/releases}
PROBE_TIMEOUT=${FLY_POTATO_PROBE_TIMEOUT:-4}
LOGS=$TC/logs
SRC_CACHE=$TC/sources
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PATH="$BIN:$PATH"

env_lines() {
    printf 'export PATH="%s:$PATH"\n' "$BIN"
    printf 'export PULUMI_HOME="%s"\n' "$PULUMI_HOME"
    printf 'export PULUMI_SKIP_UPDATE_CHECK=true\n'
    printf 'export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true\n'
}

VERIFY_FORCE=0
for arg in "$@"; do
    case $arg in
        --verify) VERIFY_FORCE=1 ;;
        --env) env_lines; exit 0 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "toolchain: unknown argument '$arg' (try --help)." >&2; exit 2 ;;
    esac
done

# ------------------------------------------------------------------ lock ---
# lock_field KIND NAME COLUMN (3 version, 4 archive/module, 5 sha256)
lock_field() { awk -v k="$1" -v n="$2" -v c="$3" '!/^#/ && $1==k && $2==n {print $c; exit}' "$LOCK"; }
CLI_VERSION=$(lock_field cli pulumi 3)
LH_VERSION=$(lock_field language python 3)
PLUGINS=$(awk '!/^#/ && $1=="plugin" {printf "%s:%s ", $2, $3}' "$LOCK")
# Policy-pack SDK of the smoke test's policy venv (matches policy/requirements.txt).
POLICY_SDK_VERSION=$(sed -n 's/^pulumi-policy==//p' "$REPO/policy/requirements.txt")
PY_SDK_VERSION=$(sed -n 's/^pulumi==//p' "$REPO/requirements.txt")

mkdir -p "$BIN" "$PULUMI_HOME" "$LOGS"

# ---------------------------------------------------------------- output ---
T_START=$(date +%s)
STEP="" STEP_T=0 TICKER=""
die() {
    [[ -n $TICKER ]] && kill "$TICKER" 2>/dev/null || true
    printf 'toolchain: %s\n' "$*" >&2
    exit 1
}
step() { STEP=$1; STEP_T=$(date +%s); }
done_step() { printf '[toolchain] %-40s %s (%ds)\n' "$STEP" "$1" $(( $(date +%s) - STEP_T )); }
# run_long LOGNAME CMD... : a long command with its output in a log and a progress line every 60 s;
# on failure the log's tail is printed.
run_long() {
    local log=$LOGS/$1.log; shift
    printf '[toolchain] %-40s started (log: %s)\n' "$STEP" "$log"
    ( local t0=$STEP_T; while sleep 60; do
        printf '[toolchain] %-40s still running (%ds)\n' "$STEP" $(( $(date +%s) - t0 )); done ) &
    TICKER=$!
    local rc=0
    "$@" >"$log" 2>&1 || rc=$?
    kill "$TICKER" 2>/dev/null || true; wait "$TICKER" 2>/dev/null || true; TICKER=""
    if (( rc != 0 )); then tail -n 15 "$log" >&2; fi
    return $rc
}
trap '[[ -n $TICKER ]] && kill "$TICKER" 2>/dev/null || true' EXIT

[[ $(uname -s) == Linux ]] || die "this script supports Linux hosts only."
case $(uname -m) in
    x86_64|amd64) ARCH_CLI=x64 ARCH_PLUGIN=amd64 ;;
    aarch64|arm64) ARCH_CLI=arm64 ARCH_PLUGIN=arm64 ;;
    *) die "unsupported machine architecture $(uname -m)." ;;
esac

# ------------------------------------------------------------- manifest ---
MANIFEST=$TC/manifest.tsv
# record COMPONENT VERSION SOURCE BINARY
record() {
    local sum tmp
    sum=$(sha256sum "$4" | awk '{print $1}')
    tmp=$(mktemp "$TC/manifest.XXXXXX")
    { printf '# component\tversion\tsource\tsha256\n'
      [[ -f $MANIFEST ]] && awk -F'\t' -v c="$1" '!/^#/ && $1 != c' "$MANIFEST"
      printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$sum"; } >"$tmp"
    mv -f "$tmp" "$MANIFEST"
}

# ------------------------------------------------------------- download ---
RELEASES_OK=""
releases_reachable() {
    if [[ -z $RELEASES_OK ]]; then
        RELEASES_OK=no
        if [[ ${FLY_POTATO_OFFLINE:-0} != 1 ]] && curl -fsSI --max-time "$PROBE_TIMEOUT" -o /dev/null \
            "$RELEASES/sdk/pulumi-v$CLI_VERSION-linux-$ARCH_CLI.tar.gz" 2>/dev/null; then
            RELEASES_OK=yes
        fi
    fi
    [[ $RELEASES_OK == yes ]]
}

# ---------------------------------------------------------- source archives ---
# find_archive FILE SHA256: print a verified copy of a source archive (kept in the cache).
find_archive() {
    local file=$1 want=$2 dir cand got d
    if [[ -f $SRC_CACHE/$file ]] && [[ $(sha256sum "$SRC_CACHE/$file" | awk '{print $1}') == "$want" ]]; then
        printf '%s\n' "$SRC_CACHE/$file"; return 0
    fi
    local dirs=()
    [[ -n ${FLY_POTATO_TOOLCHAIN_SOURCES:-} ]] && dirs+=("$FLY_POTATO_TOOLCHAIN_SOURCES")
    d=$REPO
    while [[ $d != / ]]; do
        d=$(dirname "$d")
        for cand in "$d"/vendor "$d"/*/vendor; do [[ -d $cand ]] && dirs+=("$cand"); done
    done
    for dir in "${dirs[@]}"; do
        [[ -f $dir/$file ]] || continue
        got=$(sha256sum "$dir/$file" | awk '{print $1}')
        if [[ $got != "$want" ]]; then
            echo "$dir/$file has sha256 $got, scripts/toolchain.lock expects $want; ignored" >&2
            continue
        fi
        mkdir -p "$SRC_CACHE"; cp -f "$dir/$file" "$SRC_CACHE/$file.tmp"; mv -f "$SRC_CACHE/$file.tmp" "$SRC_CACHE/$file"
        printf '%s\n' "$SRC_CACHE/$file"; return 0
    done
    return 1
}

# extract KIND NAME DEST: the verified archive of a lock line unpacked into DEST (its top folder stripped).
extract() {
    local file sum path
    file=$(lock_field "$1" "$2" 4) sum=$(lock_field "$1" "$2" 5)
    path=$(find_archive "$file" "$sum") ||
        die "$2 ($1): the source archive $file (sha256 $sum) is neither in the cache nor in FLY_POTATO_TOOLCHAIN_SOURCES${FLY_POTATO_TOOLCHAIN_SOURCES:+=$FLY_POTATO_TOOLCHAIN_SOURCES} nor in a vendor/ folder beside the checkout; set FLY_POTATO_TOOLCHAIN_SOURCES to the folder that holds it."
    rm -rf "$3"; mkdir -p "$3"
    tar -xzf "$path" -C "$3" --strip-components=1 || die "$2 ($1): unpacking $path failed."
}

source_of() { # KIND NAME: the provenance written to the manifest
    local file; file=$(lock_field "$1" "$2" 4)
    printf 'source archive %s (sha256 %s)' "$file" "$(lock_field "$1" "$2" 5 | cut -c1-12)"
}

need_go() {
    command -v go >/dev/null 2>&1 || die "$1: building it needs Go on PATH (the release download is not reachable)."
}

go_env() { GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 "$@"; }

# ------------------------------------------------------------ pulumi CLI ---
SDK_MOD=github.com/pulumi/pulumi/sdk/v3
cli_version() { "$1" version 2>/dev/null | head -n1 | tr -d '[:space:]'; }

build_cli() {
    local work=$TC/build/cli
    rm -rf "$work"; mkdir -p "$work"
    cat >"$work/go.mod" <<EOF
module flypotato.local/toolchain/pulumi-cli

go 1.25

// pkg/v3's own non-local replace, which a dependent module has to repeat.
replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
EOF
    (cd "$work" &&
        go_env go get "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v$CLI_VERSION" &&
        go_env go build -trimpath -ldflags "-s -w -X $SDK_MOD/go/common/version.Version=v$CLI_VERSION" \
            -o "$BIN/pulumi.new" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
}

ensure_cli() {
    step "pulumi CLI $CLI_VERSION"
    if [[ -x $BIN/pulumi && $(cli_version "$BIN/pulumi") == "v$CLI_VERSION" ]]; then done_step "present"; return; fi
    if releases_reachable; then
        local tmp name=pulumi-v$CLI_VERSION-linux-$ARCH_CLI.tar.gz
        tmp=$(mktemp -d "$TC/dl.XXXXXX")
        curl -fsSL --retry 2 -o "$tmp/$name" "$RELEASES/sdk/$name" && tar -xzf "$tmp/$name" -C "$tmp" ||
            die "pulumi CLI $CLI_VERSION: downloading $RELEASES/sdk/$name failed."
        cp -f "$tmp"/pulumi/* "$BIN"/
        rm -rf "$tmp"
        record cli "$CLI_VERSION" "$RELEASES/sdk/$name" "$BIN/pulumi"
        record language-python "$CLI_VERSION" "$RELEASES/sdk/$name" "$BIN/pulumi-language-python"
        done_step "downloaded"; return
    fi
    need_go "pulumi CLI $CLI_VERSION"
    run_long pulumi-cli build_cli ||
        die "pulumi CLI $CLI_VERSION: the Go build of github.com/pulumi/pulumi/pkg/v3 failed (log: $LOGS/pulumi-cli.log)."
    mv -f "$BIN/pulumi.new" "$BIN/pulumi"
    [[ $(cli_version "$BIN/pulumi") == "v$CLI_VERSION" ]] ||
        die "pulumi CLI $CLI_VERSION: the built binary reports '$(cli_version "$BIN/pulumi")'."
    record cli "$CLI_VERSION" "go module github.com/pulumi/pulumi/pkg/v3@v$CLI_VERSION" "$BIN/pulumi"
    done_step "built"
}

# ------------------------------------------------------- language host ---
build_language_host() {
    local root=$TC/build/language-python
    extract language python "$root"
    local work=$root/sdk/python/cmd/pulumi-language-python
    # Outside its monorepo the host builds against the released pkg/sdk modules of the CLI's version.
    (cd "$work" &&
        go mod edit -dropreplace "github.com/pulumi/pulumi/pkg/v3" -dropreplace "$SDK_MOD" \
            -require "github.com/pulumi/pulumi/pkg/v3@v$CLI_VERSION" -require "$SDK_MOD@v$CLI_VERSION" &&
        go_env go mod tidy &&
        go_env go build -trimpath -ldflags "-s -w -X $SDK_MOD/go/common/version.Version=v$LH_VERSION" \
            -o "$BIN/pulumi-language-python.new" .) || return 1
    install -m 0755 "$root/sdk/python/cmd/pulumi-language-python-exec" "$BIN/"
    install -m 0755 "$root/sdk/python/dist/pulumi-resource-pulumi-python" "$BIN/"
}

ensure_language_host() {
    step "python language host $LH_VERSION"
    if [[ -x $BIN/pulumi-language-python && -x $BIN/pulumi-language-python-exec &&
          $("$BIN/pulumi-language-python" -version 2>/dev/null) == "v$LH_VERSION" ]]; then
        done_step "present"; return
    fi
    if [[ -x $BIN/pulumi-language-python ]] && grep -q "get.pulumi.com" "$MANIFEST" 2>/dev/null &&
        [[ $("$BIN/pulumi-language-python" -version 2>/dev/null) == "v$CLI_VERSION" ]]; then
        done_step "downloaded with the CLI"; return
    fi
    need_go "python language host"
    run_long language-python build_language_host ||
        die "python language host: the build from $(lock_field language python 4) failed (log: $LOGS/language-python.log)."
    mv -f "$BIN/pulumi-language-python.new" "$BIN/pulumi-language-python"
    record language-python "$LH_VERSION" "$(source_of language python)" "$BIN/pulumi-language-python"
    done_step "built"
}

# --------------------------------------------------------------- plugins ---
plugin_installed() { # NAME VERSION
    local d=$PULUMI_HOME/plugins/resource-$1-v$2
    [[ -x $d/pulumi-resource-$1 && ! -e $d.partial ]]
}

# build_plugin NAME VERSION OUT: the provider from its source archive (and its upstream's, patched).
build_plugin() {
    local name=$1 ver=$2 out=$3 root=$TC/build/plugin-$1
    extract plugin "$name" "$root"
    local prov=$root/provider major mod
    mod=$(cd "$prov" && go mod edit -json | jq -r .Module.Path)
    if [[ -n $(lock_field upstream "$name" 4) ]]; then
        if [[ $name == tls ]]; then
            # pulumi-tls requires a pseudo-version of its upstream that the module proxy does not serve.
            extract upstream "$name" "$root/upstream"
            (cd "$prov" && go mod edit -replace "github.com/hashicorp/terraform-provider-tls=../upstream") || return 1
        else
            # The upstream submodule, with the provider's patches applied to it.
            extract upstream "$name" "$root/upstream"
            local p
            for p in "$root"/patches/*.patch; do
                [[ -f $p ]] || continue
                (cd "$root/upstream" && git apply --whitespace=nowarn "$p") || { echo "patch $p does not apply" >&2; return 1; }
            done
        fi
    fi
    if [[ $name == postgresql ]]; then
        # The indirect aws-sdk-go-v2/feature/rds/auth v1.6.26 is refused by the module proxy; v1.6.27 is served.
        (cd "$prov" && go mod edit -require github.com/aws/aws-sdk-go-v2/feature/rds/auth@v1.6.27) || return 1
    fi
    (cd "$prov" && go_env go mod tidy) || return 1
    local cmd=$prov/cmd/pulumi-resource-$name
    if [[ -f $cmd/generate.go ]]; then
        (cd "$cmd" && VERSION=$ver go_env go run ./generate.go) || return 1
    fi
    (cd "$prov" && go_env go build -trimpath -ldflags "-s -w -X $mod/pkg/version.Version=$ver" \
        -o "$out" "./cmd/pulumi-resource-$name") || return 1
}

ensure_plugins() {
    local spec name ver out reported
    for spec in $PLUGINS; do
        name=${spec%%:*} ver=${spec#*:}
        step "plugin $name $ver"
        if plugin_installed "$name" "$ver"; then done_step "present"; continue; fi
        if releases_reachable; then
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=false \
                pulumi plugin install resource "$name" "$ver" >"$LOGS/plugin-$name.install.log" 2>&1 ||
                die "plugin $name $ver: the download failed (log: $LOGS/plugin-$name.install.log)."
            record "plugin-$name" "$ver" "pulumi plugin install (release download)" \
                "$PULUMI_HOME/plugins/resource-$name-v$ver/pulumi-resource-$name"
            done_step "downloaded"; continue
        fi
        need_go "plugin $name $ver"
        out=$TC/build/pulumi-resource-$name
        run_long "plugin-$name" build_plugin "$name" "$ver" "$out" ||
            die "plugin $name $ver: the build from $(lock_field plugin "$name" 4) failed (log: $LOGS/plugin-$name.log)."
        pulumi plugin install resource "$name" "$ver" --file "$out" >"$LOGS/plugin-$name.install.log" 2>&1 ||
            die "plugin $name $ver: 'pulumi plugin install --file' failed (log: $LOGS/plugin-$name.install.log)."
        record "plugin-$name" "$ver" "$(source_of plugin "$name")" "$out"
        rm -f "$out"
        done_step "built"
    done
}

# ---------------------------------------------------------------- verify ---
check_versions() {
    step "versions"
    [[ $(cli_version "$BIN/pulumi") == "v$CLI_VERSION" ]] ||
        die "pulumi in $BIN reports '$(cli_version "$BIN/pulumi")', not v$CLI_VERSION."
    local ls spec name ver
    ls=$(pulumi plugin ls --json 2>/dev/null) || die "'pulumi plugin ls' failed."
    for spec in $PLUGINS; do
        name=${spec%%:*} ver=${spec#*:}
        jq -e --arg n "$name" --arg v "$ver" \
            'any(.[]; .name == $n and .kind == "resource" and (.version | ltrimstr("v")) == $v)' \
            >/dev/null <<<"$ls" || die "'pulumi plugin ls' does not list resource plugin $name $ver."
    done
    done_step "ok"
}

ensure_policy_venv() {
    local pv=$TC/policy-venv
    if [[ -x $pv/bin/python ]] && "$pv/bin/python" -c \
        "import importlib.metadata as m,sys; sys.exit(not (m.version('pulumi')=='$PY_SDK_VERSION' and m.version('pulumi-policy')=='$POLICY_SDK_VERSION'))" 2>/dev/null; then
        return 0
    fi
    rm -rf "$pv"
    "$VENV/bin/python" -m venv "$pv" &&
        "$pv/bin/pip" install -q --disable-pip-version-check "pulumi==$PY_SDK_VERSION" "pulumi-policy==$POLICY_SDK_VERSION"
}

smoke_test() {
    local tmp; tmp=$(mktemp -d "${TMPDIR:-/tmp}/fly-potato-smoke.XXXXXX")
    (
        set -e
        export PULUMI_BACKEND_URL="file://$tmp/state" PULUMI_CONFIG_PASSPHRASE=smoke
        mkdir -p "$tmp/state" "$tmp/project" "$tmp/policy"
        cat >"$tmp/project/Pulumi.yaml" <<EOF
name: toolchain-smoke
runtime:
  name: python
  options:
    virtualenv: $VENV
EOF
        cat >"$tmp/project/__main__.py" <<'EOF'
import pulumi
import pulumi_random as random
import pulumi_tls as tls

password = random.RandomPassword("password", length=24, special=False)
key = tls.PrivateKey("key", algorithm="ED25519")
pulumi.export("password_length", password.length)
pulumi.export("public_key", key.public_key_openssh)
EOF
        cat >"$tmp/policy/PulumiPolicy.yaml" <<EOF
runtime:
  name: python
  options:
    virtualenv: $TC/policy-venv
EOF
        cat >"$tmp/policy/__main__.py" <<'EOF'
from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy


def long_passwords(args, report_violation):
    if args.resource_type == "random:index/randomPassword:RandomPassword":
        if args.props.get("length", 0) < 16:
            report_violation("passwords must be at least 16 characters")


PolicyPack(
    name="toolchain-smoke",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[ResourceValidationPolicy(name="long-passwords", description="Passwords >= 16.",
                                       validate=long_passwords)],
)
EOF
        cd "$tmp/project"
        pulumi stack init smoke --non-interactive
        pulumi up --yes --skip-preview --non-interactive
        pulumi preview --expect-no-changes --non-interactive
        pulumi preview --non-interactive --policy-pack "$tmp/policy"
        # The policy must also be able to fail a preview.
        sed -i 's/length=24/length=8/' __main__.py
        if pulumi preview --non-interactive --policy-pack "$tmp/policy" >"$tmp/violation.log" 2>&1; then
            echo "a preview that breaks the smoke policy passed"; exit 1
        fi
        grep -q "long-passwords" "$tmp/violation.log"
        sed -i 's/length=8/length=24/' __main__.py
        pulumi destroy --yes --non-interactive
        pulumi stack rm smoke --yes --non-interactive
    ) >"$LOGS/smoke.log" 2>&1
    local rc=$?
    rm -rf "$tmp"
    return $rc
}

verify() {
    local stamp=$TC/.verified key
    key="$(cat "$MANIFEST" 2>/dev/null) $POLICY_SDK_VERSION $PY_SDK_VERSION"
    if (( VERIFY_FORCE == 0 )) && [[ -f $stamp && $(cat "$stamp") == "$key" ]]; then
        step "smoke test"; done_step "passed before (--verify reruns it)"; return
    fi
    [[ -x $VENV/bin/python ]] || die "smoke test: the project virtualenv $VENV is missing; run 'make venv' first."
    step "policy venv (pulumi-policy $POLICY_SDK_VERSION)"
    ensure_policy_venv >"$LOGS/policy-venv.log" 2>&1 ||
        die "smoke test: installing pulumi-policy $POLICY_SDK_VERSION into $TC/policy-venv failed (log: $LOGS/policy-venv.log)."
    done_step "ready"
    step "smoke test (up/preview/policy/destroy)"
    set +e; smoke_test; local rc=$?; set -e
    (( rc == 0 )) || { tail -n 20 "$LOGS/smoke.log" >&2; die "smoke test: failed (log: $LOGS/smoke.log)."; }
    printf '%s' "$key" >"$stamp"
    done_step "passed"
}

# ------------------------------------------------------------------ main ---
if ! command -v jq >/dev/null 2>&1; then
    step "jq (Debian package)"
    sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends jq; } >"$LOGS/jq.log" 2>&1 ||
        die "jq (Debian package): apt-get install jq failed (log: $LOGS/jq.log); install it and re-run."
    done_step "installed"
fi
ensure_cli
ensure_language_host
ensure_plugins
check_versions
verify
rm -rf "$TC/build"
printf '[toolchain] ready in %ds (manifest: %s)\n' $(( $(date +%s) - T_START )) "$MANIFEST"
