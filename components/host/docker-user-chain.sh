#!/usr/bin/env bash
# One named allow-list chain hung off Docker's DOCKER-USER chain (R-NET-5 egress, R-NET-6 DataLens).
#
# Docker publishes and forwards without consulting ufw; DOCKER-USER is the chain it evaluates first, so
# that is where the host enforces what a zone may reach (egress) or who may reach a listener (ingress).
#
#   docker-user-chain.sh apply  --chain FP-… --comment TAG --from CIDR [--exempt CIDR]… [--allow PROTO:PORT[:CIDR]]…
#   docker-user-chain.sh apply  --chain FP-… --comment TAG --to CIDR:PORT [--exempt CIDR]… [--allow-source CIDR]…
#   docker-user-chain.sh remove --chain FP-…
#   docker-user-chain.sh show   --chain FP-…
#
# --from: traffic leaving CIDR (a zone's subnet) is checked; --exempt destinations (the stack's own
#         subnets) are left to Docker; everything not allowed is rejected.
# --to:   new TCP connections to CIDR:PORT are checked; --exempt and --allow-source sources pass.
# apply replaces the chain's content in one iptables-restore transaction and keeps exactly one jump from
# DOCKER-USER (stale jumps to the chain are deleted); running it twice changes nothing. remove deletes
# the jumps and the chain and nothing else. --dry-run prints the iptables input instead of applying it.
# Environment: IPTABLES (default iptables; iptables-restore is derived), DOCKER_USER_CHAIN_WAIT (lock wait, 5 s).
set -euo pipefail

action="${1:-}"
[[ $# -gt 0 ]] && shift
chain="" comment="" from="" to="" dry_run=0
exempt=() allow=() allow_source=()
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" 2>/dev/null | sed 's/^# \{0,1\}//' >&2 || true; exit 2; }
fail() { echo "docker-user-chain: $*" >&2; exit "${2:-1}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --chain) chain="${2:-}"; shift 2 ;;
    --comment) comment="${2:-}"; shift 2 ;;
    --from) from="${2:-}"; shift 2 ;;
    --to) to="${2:-}"; shift 2 ;;
    --exempt) exempt+=("${2:-}"); shift 2 ;;
    --allow) allow+=("${2:-}"); shift 2 ;;
    --allow-source) allow_source+=("${2:-}"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage ;;
    *) fail "unknown argument $1; see --help" 2 ;;
  esac
done

cidr_re='^([0-9]{1,3}\.){3}[0-9]{1,3}(/([0-9]|[12][0-9]|3[0-2]))?$'
check_cidr() { [[ "$1" =~ $cidr_re ]] || fail "$2 = '$1' is not an IPv4 address or CIDR block such as 10.231.40.0/24" 2; }
canon() { if [[ "$1" == */* ]]; then echo "$1"; else echo "$1/32"; fi; }  # as iptables -S prints it
check_port() { [[ "$1" =~ ^[0-9]{1,5}$ ]] && (( $1 >= 1 && $1 <= 65535 )) || fail "$2 = '$1' is not a port (1-65535)" 2; }

case "$action" in apply|remove|show) ;; *) fail "the first argument must be apply, remove or show (got '${action}')" 2 ;; esac
# Only chains this tool owns: a typo can never flush DOCKER-USER, FORWARD or Docker's own chains.
[[ "$chain" =~ ^FP-[A-Za-z0-9_-]{1,25}$ ]] || fail "--chain '${chain}' must be FP- followed by 1-25 letters, digits, _ or -" 2

ipt="${IPTABLES:-iptables}"
wait_s="${DOCKER_USER_CHAIN_WAIT:-5}"
sudo=()
if [[ "$(id -u)" != 0 ]]; then sudo=(sudo -n); fi
run_ipt() { "${sudo[@]}" "$ipt" -w "$wait_s" "$@"; }
chain_exists() { run_ipt -S "$chain" >/dev/null 2>&1; }

# Every DOCKER-USER rule that jumps to the chain, as iptables -S prints it without quotes (our comments
# carry no spaces, so the words split back into arguments safely).
jumps_to_chain() {
  run_ipt -S DOCKER-USER 2>/dev/null | tr -d '"' | awk -v c="$chain" '{ for (i = 1; i < NF; i++) if ($i == "-j" && $(i + 1) == c) { print; next } }'
}

delete_rule_line() {  # "-A DOCKER-USER …" → "-D DOCKER-USER …"
  local -a words
  read -r -a words <<<"$1"
  words[0]="-D"
  run_ipt "${words[@]}"
}

if [[ "$action" == remove ]]; then
  removed=0
  if [[ $dry_run == 1 ]]; then
    echo "would delete every DOCKER-USER jump to ${chain}, then flush and delete ${chain}"
    exit 0
  fi
  while IFS= read -r line; do
    [[ -n "$line" ]] || continue
    delete_rule_line "$line"
    echo "deleted DOCKER-USER rule: ${line#-A DOCKER-USER }"
    removed=$((removed + 1))
  done < <(jumps_to_chain)
  if chain_exists; then
    count=$(run_ipt -S "$chain" | grep -c '^-A ' || true)
    run_ipt -F "$chain"
    run_ipt -X "$chain"
    echo "deleted chain ${chain} (${count} rules) and ${removed} jump(s) from DOCKER-USER"
  else
    echo "chain ${chain} not present; ${removed} jump(s) deleted; nothing else to remove"
  fi
  exit 0
fi

if [[ "$action" == show ]]; then
  echo "# jumps from DOCKER-USER"
  jumps_to_chain
  echo "# ${chain}"
  if chain_exists; then run_ipt -S "$chain"; else echo "(chain not present)"; fi
  exit 0
fi

# --- apply -------------------------------------------------------------------------------------------
[[ "$comment" =~ ^[A-Za-z0-9_.:/=-]{1,200}$ ]] || fail "--comment '${comment}' must be 1-200 characters of letters, digits and _ . : / = -" 2
if [[ -n "$from" && -n "$to" ]] || [[ -z "$from" && -z "$to" ]]; then fail "give exactly one of --from CIDR (egress) or --to CIDR:PORT (ingress)" 2; fi
for item in "${exempt[@]}"; do check_cidr "$item" --exempt; done

rules=("-m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment ${comment}:established -j RETURN")
if [[ -n "$from" ]]; then
  check_cidr "$from" --from
  from="$(canon "$from")"
  [[ ${#allow_source[@]} -eq 0 ]] || fail "--allow-source belongs to --to (ingress); with --from use --allow PROTO:PORT[:CIDR]" 2
  jump="-s ${from} -m comment --comment ${comment} -j ${chain}"
  for item in "${exempt[@]}"; do rules+=("-d ${item} -m comment --comment ${comment}:stack -j RETURN"); done
  for item in "${allow[@]}"; do
    IFS=: read -r proto port dest extra <<<"$item"
    [[ -z "${extra:-}" ]] || fail "--allow '${item}' has too many fields; write PROTO:PORT[:CIDR]" 2
    [[ "$proto" == tcp || "$proto" == udp ]] || fail "--allow '${item}': protocol must be tcp or udp" 2
    check_port "$port" "--allow ${item}: port"
    dest="${dest:-0.0.0.0/0}"
    check_cidr "$dest" "--allow ${item}: destination"
    rules+=("-d ${dest} -p ${proto} -m ${proto} --dport ${port} -m comment --comment ${comment}:allow -j RETURN")
  done
  summary="traffic from ${from}: ${#allow[@]} allowed flow(s) [${allow[*]:-none}], ${#exempt[@]} stack subnet(s) exempt, the rest rejected"
else
  IFS=: read -r to_cidr to_port extra <<<"$to"
  [[ -z "${extra:-}" && -n "${to_port:-}" ]] || fail "--to '${to}' must be CIDR:PORT, e.g. 10.231.40.0/24:5433" 2
  check_cidr "$to_cidr" --to
  to_cidr="$(canon "$to_cidr")"
  check_port "$to_port" "--to port"
  [[ ${#allow[@]} -eq 0 ]] || fail "--allow belongs to --from (egress); with --to use --allow-source CIDR" 2
  jump="-d ${to_cidr} -p tcp -m tcp --dport ${to_port} -m comment --comment ${comment} -j ${chain}"
  for item in "${exempt[@]}"; do rules+=("-s ${item} -m comment --comment ${comment}:stack -j RETURN"); done
  for item in "${allow_source[@]}"; do
    check_cidr "$item" --allow-source
    rules+=("-s ${item} -m comment --comment ${comment}:allow -j RETURN")
  done
  summary="new connections to ${to_cidr} port ${to_port}: ${#allow_source[@]} allowed source(s) [${allow_source[*]:-none}], the rest rejected"
fi
rules+=("-p tcp -m comment --comment ${comment}:reject -j REJECT --reject-with tcp-reset")
rules+=("-m comment --comment ${comment}:reject -j REJECT --reject-with icmp-admin-prohibited")

# Declaring the chain in a --noflush restore creates it or empties it; the new content lands atomically.
payload="*filter
:${chain} - [0:0]
$(for rule in "${rules[@]}"; do echo "-A ${chain} ${rule}"; done)
COMMIT"

if [[ $dry_run == 1 ]]; then
  echo "# ${ipt}-restore --noflush"
  echo "$payload"
  echo "# then, unless present: ${ipt} -I DOCKER-USER 1 ${jump}"
  echo "would apply ${chain}: ${summary}"
  exit 0
fi

if ! run_ipt -S DOCKER-USER >/dev/null 2>&1; then
  fail "the DOCKER-USER chain does not exist on this host: dockerd is not running or does not manage iptables (\"iptables\": false, or the nftables firewall backend). Start dockerd with iptables enabled, then run pulumi up again" 3
fi
echo "$payload" | "${sudo[@]}" "${ipt}-restore" -w "$wait_s" --noflush
read -r -a jump_words <<<"$jump"
if run_ipt -C DOCKER-USER "${jump_words[@]}" 2>/dev/null; then
  jump_state="already present"
else
  run_ipt -I DOCKER-USER 1 "${jump_words[@]}"
  jump_state="inserted at position 1"
fi
stale=0
while IFS= read -r line; do
  [[ -n "$line" && "$line" != "-A DOCKER-USER ${jump}" ]] || continue
  delete_rule_line "$line"
  echo "deleted stale jump: ${line#-A DOCKER-USER }"
  stale=$((stale + 1))
done < <(jumps_to_chain)
if ! run_ipt -C DOCKER-USER "${jump_words[@]}" 2>/dev/null; then
  # iptables printed the jump differently from how it was written: put it back rather than leave the chain unused.
  run_ipt -I DOCKER-USER 1 "${jump_words[@]}"
  echo "warning: re-inserted the DOCKER-USER jump (iptables prints it differently from: ${jump})" >&2
fi
echo "applied ${chain} (${#rules[@]} rules): ${summary}; DOCKER-USER jump ${jump_state}; ${stale} stale jump(s) deleted"
