#!/usr/bin/env bash
# Provide the Pulumi CLI, its Python language host and the resource plugins the
# stacks need, at exactly the versions the pinned Python SDKs expect.
#
# Sources, in order of preference (see docs/toolchain.md):
#   1. the toolchain cache, when it already holds the right versions (no-op);
#   2. a `pulumi` already on PATH at the right version;
#   3. release archives in $FLY_POTATO_TOOLCHAIN_ARTIFACTS (carried in by hand);
#   4. the official release download, when it answers within a few seconds;
#   5. a build from the Go modules through the Go module proxy.
#
# Usage: scripts/toolchain.sh [--verify] [--env]
#   --verify  run the smoke test even if the cache was verified before
#   --env     only print the environment lines the rest of the project uses
#
# Exit status: 0 ready; 3 when no source of a component is reachable from here
# (scripts/stack.sh then falls back to the local applier); 1 on any other failure.
set -euo pipefail

# ---------------------------------------------------------------- versions ---
PULUMI_VERSION=${FLY_POTATO_PULUMI_VERSION:-3.272.0}
# name:version of every resource plugin the stacks use (matches requirements.txt).
PLUGINS=${FLY_POTATO_PLUGINS:-"docker:5.2.0 command:1.2.1 random:4.21.4 tls:5.6.2 keycloak:6.14.1 postgresql:3.18.2"}
# Policy-pack SDK used by the smoke test's policy venv; 1.21.0 needs pulumi>=3.204 and protobuf~=5.29.
POLICY_SDK_VERSION=${FLY_POTATO_POLICY_SDK_VERSION:-1.21.0}

# ------------------------------------------------------------------ layout ---
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TC=${FLY_POTATO_TOOLCHAIN:-$HOME/.cache/fly-potato/toolchain}
BIN=$TC/bin
export PULUMI_HOME=${FLY_POTATO_PULUMI_HOME:-$TC/pulumi-home}
VENV=${FLY_POTATO_VENV:-$REPO/.venv}
ARTIFACTS=${FLY_POTATO_TOOLCHAIN_ARTIFACTS:-}
RELEASES=${FLY_POTATO_PULUMI_RELEASES:-https://get.pulumi.com/releases}
PROBE_TIMEOUT=${FLY_POTATO_PROBE_TIMEOUT:-4}
LOGS=$TC/logs
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PATH="$BIN:$PATH"

env_lines() {
    printf 'export PATH="%s:$PATH"\n' "$BIN"
    printf 'export PULUMI_HOME="%s"\n' "$PULUMI_HOME"
    printf 'export PULUMI_SKIP_UPDATE_CHECK=true\n'
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

mkdir -p "$BIN" "$PULUMI_HOME" "$LOGS"

# ---------------------------------------------------------------- output ---
T_START=$(date +%s)
STEP="" STEP_T=0 TICKER=""
die() {
    [[ -n $TICKER ]] && kill "$TICKER" 2>/dev/null || true
    printf 'toolchain: %s\n' "$*" >&2
    exit 1
}
# unobtainable MESSAGE: no source of a component is reachable (exit 3, unlike a failure of one that is).
unobtainable() {
    [[ -n $TICKER ]] && kill "$TICKER" 2>/dev/null || true
    printf 'toolchain: %s\n' "$*" >&2
    exit 3
}
step() { STEP=$1; STEP_T=$(date +%s); }
done_step() { printf '[toolchain] %-44s %s (%ds)\n' "$STEP" "$1" $(( $(date +%s) - STEP_T )); }
# run_long LOGNAME CMD... : run a long command with its output in a log and a
# progress line every 60 s; on failure print the log's tail and return non-zero.
run_long() {
    local log=$LOGS/$1.log; shift
    printf '[toolchain] %-44s started (log: %s)\n' "$STEP" "$log"
    ( local t0=$STEP_T; while sleep 60; do
        printf '[toolchain] %-44s still running (%ds)\n' "$STEP" $(( $(date +%s) - t0 )); done ) &
    TICKER=$!
    local rc=0
    "$@" >"$log" 2>&1 || rc=$?
    kill "$TICKER" 2>/dev/null || true; wait "$TICKER" 2>/dev/null || true; TICKER=""
    if (( rc != 0 )); then tail -n 15 "$log" >&2; fi
    return $rc
}
trap '[[ -n $TICKER ]] && kill "$TICKER" 2>/dev/null || true' EXIT

# --------------------------------------------------------------- helpers ---
OS=linux
case $(uname -m) in
    x86_64|amd64) ARCH_CLI=x64 ARCH_PLUGIN=amd64 ;;
    aarch64|arm64) ARCH_CLI=arm64 ARCH_PLUGIN=arm64 ;;
    *) die "unsupported machine architecture $(uname -m)." ;;
esac
[[ $(uname -s) == Linux ]] || die "this script supports Linux hosts only."

cli_version() { "$1" version 2>/dev/null | head -n1 | tr -d '[:space:]'; }

RELEASES_OK=""
releases_reachable() {
    if [[ -z $RELEASES_OK ]]; then
        RELEASES_OK=no
        if [[ ${FLY_POTATO_OFFLINE:-0} != 1 ]] && curl -fsSI --max-time "$PROBE_TIMEOUT" -o /dev/null \
            "$RELEASES/sdk/pulumi-v$PULUMI_VERSION-$OS-$ARCH_CLI.tar.gz" 2>/dev/null; then
            RELEASES_OK=yes
        fi
    fi
    [[ $RELEASES_OK == yes ]]
}

# go_module_dir MODULE VERSION: print the read-only module directory the Go
# module proxy delivers, or fail with the proxy's reason.
go_module_dir() {
    local out dir err
    out=$(cd "$TC" && GOFLAGS=-mod=mod go mod download -json "$1@$2" 2>&1) || true
    dir=$(printf '%s' "$out" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p' | head -n1)
    if [[ -n $dir && -d $dir ]]; then printf '%s\n' "$dir"; return 0; fi
    err=$(printf '%s' "$out" | sed -n 's/^[[:space:]]*"Error": "\(.*\)",*$/\1/p' | head -n1 | sed 's/\\n.*//; s/\\t/ /g')
    printf '%s\n' "${err:-$out}" >&2
    return 1
}

# repo_subdir MODULE: the module's directory inside its repository
# (github.com/OWNER/REPO/a/b/vN -> a/b), so sibling modules land where a
# relative replace directive expects them.
repo_subdir() {
    local rest
    rest=$(printf '%s' "$1" | cut -d/ -f4-)
    rest=$(printf '%s' "$rest" | sed -E 's#(^|/)v[0-9]+$##')
    printf '%s\n' "${rest:-.}"
}

# stage_module MODULE VERSION: copy the module into a writable build tree (so
# its own go.mod, replace directives included, drives the build) and print
# its directory. A replace pointing at a sibling directory of the same
# repository (e.g. pkg -> ../sdk) is filled with that module at the version
# go.mod requires; one pointing anywhere else (e.g. ../upstream, the git
# submodule with a bridged provider's patched upstream) cannot be built this way.
stage_module() {
    local src root work
    src=$(go_module_dir "$1" "$2") || return 1
    root=$TC/build/$(printf '%s@%s' "$1" "$2" | tr '/@' '__')
    work=$root/$(repo_subdir "$1")
    rm -rf "$root"; mkdir -p "$work"
    cp -R "$src"/. "$work"; chmod -R u+w "$work"
    local old rel want dir
    while IFS=$'\t' read -r old rel; do
        [[ -n $old ]] || continue
        dir=$(realpath -m "$work/$rel")
        [[ -f $dir/go.mod ]] && continue
        want=$(cd "$work" && go mod edit -json | jq -r --arg p "$old" '.Require[]? | select(.Path == $p) | .Version')
        # Only modules of the same repository (released together with it) may
        # stand in; anything else would build unpatched upstream code.
        if [[ $(cut -d/ -f1-3 <<<"$old") != $(cut -d/ -f1-3 <<<"$1") || -z $want ]] ||
            ! src=$(go_module_dir "$old" "$want" 2>/dev/null); then
            echo "$1@$2 replaces $old with $rel, which is not part of the module archive and no module version provides it" >&2
            return 1
        fi
        mkdir -p "$dir"; cp -R "$src"/. "$dir"; chmod -R u+w "$dir"
    done < <(cd "$work" && go mod edit -json |
        jq -r '.Replace[]? | select(.New.Path | startswith("./") or startswith("../")) | [.Old.Path, .New.Path] | @tsv')
    printf '%s\n' "$work"
}

go_build() { # DIR PKG OUT LDFLAGS
    (cd "$1" && GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
        go build -trimpath -ldflags "-s -w $4" -o "$3" "./$2")
}

need_go() {
    command -v go >/dev/null 2>&1 || unobtainable "building $1 needs Go on PATH, and no other source of it is available."
}

# ------------------------------------------------------------ pulumi CLI ---
SDK_MOD=github.com/pulumi/pulumi/sdk/v3
VERSION_LDFLAGS="-X $SDK_MOD/go/common/version.Version=v$PULUMI_VERSION"

cli_ready() {
    [[ -x $BIN/pulumi && -x $BIN/pulumi-language-python ]] &&
        [[ $(cli_version "$BIN/pulumi") == "v$PULUMI_VERSION" ]]
}

install_cli_from_path() {
    local p dir f
    p=$(PATH=${PATH#"$BIN:"} command -v pulumi 2>/dev/null) || return 1
    [[ $(cli_version "$p") == "v$PULUMI_VERSION" ]] || return 1
    dir=$(cd "$(dirname "$(readlink -f "$p")")" && pwd)
    [[ -x $dir/pulumi-language-python ]] || return 1
    for f in "$dir"/pulumi "$dir"/pulumi-language-python* "$dir"/pulumi-resource-pulumi-python \
             "$dir"/pulumi-analyzer-policy-python; do
        [[ -e $f ]] && ln -sf "$f" "$BIN/$(basename "$f")"
    done
    echo "linked from $dir"
}

install_cli_tarball() { # TARBALL
    local tmp; tmp=$(mktemp -d "$TC/cli.XXXXXX")
    tar -xzf "$1" -C "$tmp" || { rm -rf "$tmp"; return 1; }
    [[ -x $tmp/pulumi/pulumi ]] || { rm -rf "$tmp"; return 1; }
    cp -f "$tmp"/pulumi/* "$BIN"/
    rm -rf "$tmp"
}

download_cli() {
    local name=pulumi-v$PULUMI_VERSION-$OS-$ARCH_CLI.tar.gz tmp sums want got
    tmp=$(mktemp -d "$TC/dl.XXXXXX")
    curl -fsSL --retry 2 -o "$tmp/$name" "$RELEASES/sdk/$name" || { rm -rf "$tmp"; return 1; }
    if curl -fsSL -o "$tmp/sums" "$RELEASES/sdk/pulumi-$PULUMI_VERSION-checksums.txt" 2>/dev/null; then
        want=$(awk -v n="$name" '$2==n {print $1}' "$tmp/sums")
        got=$(sha256sum "$tmp/$name" | awk '{print $1}')
        [[ -z $want || $want == "$got" ]] || { rm -rf "$tmp"; echo "checksum mismatch for $name" >&2; return 1; }
    fi
    install_cli_tarball "$tmp/$name"; local rc=$?
    rm -rf "$tmp"; return $rc
}

build_cli() {
    need_go "the Pulumi CLI"
    local work
    step "build pulumi v$PULUMI_VERSION (Go)"
    if [[ -x $BIN/pulumi && $(cli_version "$BIN/pulumi") == "v$PULUMI_VERSION" ]]; then
        done_step "present"
    else
        work=$(stage_module github.com/pulumi/pulumi/pkg/v3 "v$PULUMI_VERSION" 2>"$LOGS/pulumi-cli.err") ||
            unobtainable "no buildable github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION from the Go module proxy ($(cat "$LOGS/pulumi-cli.err")), and no other source of the Pulumi CLI is reachable (see docs/toolchain.md, FLY_POTATO_TOOLCHAIN_ARTIFACTS)."
        run_long pulumi-cli go_build "$work" cmd/pulumi "$BIN/pulumi.new" "$VERSION_LDFLAGS" ||
            die "building the Pulumi CLI from its Go module failed (see $LOGS/pulumi-cli.log)."
        mv -f "$BIN/pulumi.new" "$BIN/pulumi"
        done_step "built"
    fi

    step "build pulumi-language-python (Go)"
    local lh=github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
    if [[ -x $BIN/pulumi-language-python && $(cat "$BIN/.pulumi-language-python.version" 2>/dev/null) == "$PULUMI_VERSION" ]]; then
        done_step "present"
    else
        work=$(stage_module "$lh" "v$PULUMI_VERSION" 2>"$LOGS/language-python.err") ||
            unobtainable "no buildable $lh@v$PULUMI_VERSION from the Go module proxy ($(cat "$LOGS/language-python.err")), and no other source of the Python language host is reachable (see docs/toolchain.md, FLY_POTATO_TOOLCHAIN_ARTIFACTS)."
        run_long language-python go_build "$work" . "$BIN/pulumi-language-python" "$VERSION_LDFLAGS" ||
            die "building the Python language host from its Go module failed (see $LOGS/language-python.log)."
        printf '%s\n' "$PULUMI_VERSION" >"$BIN/.pulumi-language-python.version"
        done_step "built"
    fi

    # The shell/Python shims shipped next to the language host live in the SDK module.
    step "install Python host shims"
    local sdk
    sdk=$(go_module_dir "$SDK_MOD" "v$PULUMI_VERSION" 2>"$LOGS/sdk.err") ||
        die "the Go module proxy does not provide $SDK_MOD@v$PULUMI_VERSION ($(cat "$LOGS/sdk.err"))."
    install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$BIN/"
    install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$BIN/"
    [[ -f $sdk/python/dist/pulumi-analyzer-policy-python ]] &&
        install -m 0755 "$sdk/python/dist/pulumi-analyzer-policy-python" "$BIN/"
    done_step "installed"
}

ensure_cli() {
    step "pulumi CLI v$PULUMI_VERSION"
    if cli_ready; then done_step "present"; return; fi
    local how
    if how=$(install_cli_from_path) && cli_ready; then done_step "$how"; return; fi
    local tarball=${ARTIFACTS:+$ARTIFACTS/pulumi-v$PULUMI_VERSION-$OS-$ARCH_CLI.tar.gz}
    if [[ -n $tarball && -f $tarball ]]; then
        install_cli_tarball "$tarball" && cli_ready && { done_step "from $tarball"; return; }
        die "$tarball does not contain a working pulumi v$PULUMI_VERSION."
    fi
    if releases_reachable; then
        download_cli && cli_ready && { done_step "downloaded"; return; }
        die "downloading the Pulumi CLI v$PULUMI_VERSION release failed."
    fi
    done_step "no install or download reachable; building"
    build_cli
    cli_ready || die "the built Pulumi CLI does not report v$PULUMI_VERSION."
}

# --------------------------------------------------------------- plugins ---
plugin_installed() { # NAME VERSION
    local d=$PULUMI_HOME/plugins/resource-$1-v$2
    [[ -x $d/pulumi-resource-$1 && ! -e $d.partial ]]
}

install_plugin_file() { # NAME VERSION FILE
    pulumi plugin install resource "$1" "$2" --file "$3" >"$LOGS/plugin-$1.install.log" 2>&1 ||
        die "installing plugin $1 v$2 from $3 failed (see $LOGS/plugin-$1.install.log)."
}

# Module path of a provider: github.com/pulumi/pulumi-NAME/provider[/vMAJOR].
provider_module() { # NAME VERSION
    local major=${2%%.*}
    if (( major >= 2 )); then echo "github.com/pulumi/pulumi-$1/provider/v$major"
    else echo "github.com/pulumi/pulumi-$1/provider"; fi
}

# Make every file the main package embeds exist: bridged providers embed a
# schema generated at build time (schema-embed.json from schema.json by
# generate.go; schema.json and bridge-metadata.json from the tfgen binary).
prepare_embeds() { # WORK NAME VERSION
    local work=$1 name=$2 ver=$3 cmd=$1/cmd/pulumi-resource-$2 missing
    embeds() { grep -ho '^//go:embed .*' "$cmd"/*.go 2>/dev/null | sed 's#^//go:embed ##' | tr ' ' '\n' | sed '/^$/d' | sort -u; }
    missing_embeds() { local f; for f in $(embeds); do [[ -e $cmd/$f ]] || printf '%s ' "$f"; done; }
    missing=$(missing_embeds)
    [[ -z $missing ]] && return 0
    if [[ ! -f $cmd/schema.json && -d $work/cmd/pulumi-tfgen-$name ]]; then
        go_build "$work" "cmd/pulumi-tfgen-$name" "$work/pulumi-tfgen-$name" "" &&
            (cd "$work" && PULUMI_SKIP_UPDATE_CHECK=true VERSION=$ver \
                ./pulumi-tfgen-$name schema --out "cmd/pulumi-resource-$name") || return 1
    fi
    if [[ -f $cmd/generate.go ]] && [[ -n $(missing_embeds) ]]; then
        (cd "$cmd" && VERSION=$ver GOFLAGS="-mod=mod -buildvcs=false" go run ./generate.go) || return 1
    fi
    missing=$(missing_embeds)
    [[ -z $missing ]] || { echo "still missing embedded files: $missing" >&2; return 1; }
}

build_plugin_steps() { # WORK NAME VERSION OUT LDFLAGS
    prepare_embeds "$1" "$2" "$3" && go_build "$1" "cmd/pulumi-resource-$2" "$4" "$5"
}

build_plugin() { # NAME VERSION OUT
    local name=$1 ver=$2 out=$3 mod work vdir ldflags=""
    mod=$(provider_module "$name" "$ver")
    work=$(stage_module "$mod" "v$ver" 2>"$LOGS/plugin-$name.err") ||
        unobtainable "no buildable $mod@v$ver from the Go module proxy ($(cat "$LOGS/plugin-$name.err")), and no other source of the $name plugin is reachable (see docs/toolchain.md, FLY_POTATO_TOOLCHAIN_ARTIFACTS)."
    [[ -d $work/cmd/pulumi-resource-$name ]] || die "$mod@v$ver has no cmd/pulumi-resource-$name package."
    # The provider reports the version set in its version package.
    for vdir in pkg/version version; do
        if [[ -f $work/$vdir/version.go ]]; then ldflags="-X $mod/$vdir.Version=$ver"; break; fi
    done
    run_long "plugin-$name" build_plugin_steps "$work" "$name" "$ver" "$out" "$ldflags" ||
        die "building the $name plugin v$ver from $mod failed (see $LOGS/plugin-$name.log)."
}

ensure_plugins() {
    local spec name ver tarball
    for spec in $PLUGINS; do
        name=${spec%%:*} ver=${spec#*:}
        step "plugin $name v$ver"
        if plugin_installed "$name" "$ver"; then done_step "present"; continue; fi
        tarball=${ARTIFACTS:+$ARTIFACTS/pulumi-resource-$name-v$ver-$OS-$ARCH_PLUGIN.tar.gz}
        if [[ -n $tarball && -f $tarball ]]; then
            install_plugin_file "$name" "$ver" "$tarball"; done_step "from $tarball"; continue
        fi
        if releases_reachable; then
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=false \
                pulumi plugin install resource "$name" "$ver" >"$LOGS/plugin-$name.install.log" 2>&1 ||
                die "downloading plugin $name v$ver failed (see $LOGS/plugin-$name.install.log)."
            done_step "downloaded"; continue
        fi
        need_go "the $name plugin"
        local out=$TC/build/pulumi-resource-$name-v$ver
        build_plugin "$name" "$ver" "$out"
        install_plugin_file "$name" "$ver" "$out"
        done_step "built"
    done
}

# ---------------------------------------------------------------- verify ---
check_versions() {
    step "check versions"
    [[ $(cli_version "$BIN/pulumi") == "v$PULUMI_VERSION" ]] ||
        die "pulumi in $BIN reports '$(cli_version "$BIN/pulumi")', not v$PULUMI_VERSION."
    local ls spec name ver
    ls=$(pulumi plugin ls --json 2>/dev/null) || die "'pulumi plugin ls' failed."
    for spec in $PLUGINS; do
        name=${spec%%:*} ver=${spec#*:}
        jq -e --arg n "$name" --arg v "$ver" \
            'any(.[]; .name == $n and .kind == "resource" and (.version | ltrimstr("v")) == $v)' \
            >/dev/null <<<"$ls" || die "'pulumi plugin ls' does not list resource plugin $name v$ver."
    done
    done_step "ok"
}

ensure_policy_venv() {
    local pv=$TC/policy-venv
    if [[ -x $pv/bin/python ]] && "$pv/bin/python" -c \
        "import importlib.metadata as m,sys; sys.exit(not (m.version('pulumi')=='$PULUMI_VERSION' and m.version('pulumi-policy')=='$POLICY_SDK_VERSION'))" 2>/dev/null; then
        return 0
    fi
    rm -rf "$pv"
    "$VENV/bin/python" -m venv "$pv" &&
        "$pv/bin/pip" install -q "pulumi==$PULUMI_VERSION" "pulumi-policy==$POLICY_SDK_VERSION"
}

smoke_test() {
    local tmp; tmp=$(mktemp -d "${TMPDIR:-/tmp}/fly-potato-smoke.XXXXXX")
    (
        set -e
        export PULUMI_BACKEND_URL="file://$tmp/state" PULUMI_CONFIG_PASSPHRASE=test
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
    key="$PULUMI_VERSION $PLUGINS $POLICY_SDK_VERSION $(stat -c %Y "$BIN/pulumi" "$BIN/pulumi-language-python" 2>/dev/null | tr '\n' ' ')"
    if (( VERIFY_FORCE == 0 )) && [[ -f $stamp && $(cat "$stamp") == "$key" ]]; then
        step "smoke test"; done_step "passed before (rerun with --verify)"; return
    fi
    [[ -x $VENV/bin/python ]] || die "the project virtualenv $VENV is missing; create it first (make venv)."
    step "policy venv (pulumi-policy $POLICY_SDK_VERSION)"
    ensure_policy_venv >"$LOGS/policy-venv.log" 2>&1 ||
        die "installing pulumi-policy $POLICY_SDK_VERSION into $TC/policy-venv failed (see $LOGS/policy-venv.log)."
    done_step "ready"
    step "smoke test (up/preview/policy/destroy)"
    set +e; smoke_test; local rc=$?; set -e
    (( rc == 0 )) || { tail -n 20 "$LOGS/smoke.log" >&2; die "the smoke test failed (see $LOGS/smoke.log)."; }
    printf '%s' "$key" >"$stamp"
    done_step "passed"
}

# ------------------------------------------------------------------ main ---
ensure_cli
ensure_plugins
check_versions
verify
rm -rf "$TC/build"
printf '[toolchain] ready in %ds; use it with:\n' $(( $(date +%s) - T_START ))
env_lines
