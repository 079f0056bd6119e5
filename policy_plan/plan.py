"""Offline policy plan: the real program under mocks, checked by every policy of the pack.

    python -m policy_plan --stack prod [--json] [--preview] [--set publish.postgres=public ...]
                          [--policy-config levels.json]

Prints the resource count, the port matrix and the violations with their level. Exit status: 0 when
no mandatory violation, 1 otherwise, 2 when the stack config is invalid (its sentences are printed).
Needs no engine, no Docker and no secrets: secure config values are replaced by placeholders.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import yaml

from policy import context
from policy.props import CONTAINER, ContainerView, plain
from policy.spec import is_routable
from policy_plan import crossguard
from policy_plan.program import ProgramGraph, evaluate_program
from wire import PROJECT


def parse_assignment(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set {text!r}: write KEY=VALUE, e.g. publish.postgres=public")
    # YAML scalars and flow collections: 5433, true, public, ["203.0.113.0/24"]
    return key.removeprefix(f"{PROJECT}:"), yaml.safe_load(value) if value else ""


def port_matrix(graph: ProgramGraph) -> list[dict[str, Any]]:
    rows = []
    for resource in graph.of_type(CONTAINER):
        view = ContainerView(resource.name, resource.urn, plain(crossguard.policy_props(resource)))
        for binding in view.bindings():
            rows.append(
                {
                    "service": binding.service,
                    "host_ip": binding.ip,
                    "host_port": binding.host_port,
                    "container_port": binding.container_port,
                    "protocol": binding.protocol,
                    "routable": is_routable(binding.ip) if isinstance(binding.ip, str) else None,
                }
            )
    return sorted(rows, key=lambda r: (r["service"], str(r["host_port"])))


def _secret_keys(config: dict[str, Any]) -> frozenset[str]:
    return frozenset(k for k, v in config.items() if v == "offline-placeholder-secret")


def run(
    stack: str, overrides: dict[str, Any], *, preview: bool = False, policy_config: dict[str, Any] | None = None
) -> tuple[ProgramGraph, crossguard.Result | None, float]:
    started = time.perf_counter()
    graph = evaluate_program(stack, overrides, preview=preview)
    if graph.error is not None:
        return graph, None, time.perf_counter() - started
    ctx = context.make(stack, graph.config, secret_keys=_secret_keys(graph.config))
    result = crossguard.run(graph, ctx, policy_config=policy_config)
    return graph, result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policy_plan", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", required=True, help="dev or prod (reads Pulumi.<stack>.yaml)")
    parser.add_argument("--json", action="store_true", help="one JSON object: resources, ports, violations")
    parser.add_argument(
        "--preview", action="store_true", help="evaluate as a preview of a new stack (provider outputs unknown)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        type=parse_assignment,
        metavar="KEY=VALUE",
        help="override a stack config key by dotted path (repeatable)",
    )
    parser.add_argument(
        "--policy-config",
        metavar="FILE",
        help="policy config as for `pulumi preview --policy-pack-config` (levels per policy)",
    )
    args = parser.parse_args(argv)
    policy_config = None
    if args.policy_config:
        with open(args.policy_config, encoding="utf-8") as handle:
            policy_config = json.load(handle)

    graph, result, _ = run(args.stack, dict(args.overrides), preview=args.preview, policy_config=policy_config)
    if result is None:
        message = (graph.error or "").removeprefix("stack config is invalid:").strip()
        if args.json:
            print(json.dumps({"error": message.splitlines()}, indent=2))
        else:
            print(f"stack {args.stack}: config is invalid", file=sys.stderr)
            for sentence in message.splitlines():
                print(f"  {sentence}", file=sys.stderr)
        return 2

    ports = port_matrix(graph)
    violations = sorted(result.violations, key=lambda v: (v.level != "mandatory", v.policy, v.resource, v.message))
    if args.json:
        print(
            json.dumps(
                {"resources": len(graph.resources), "ports": ports, "violations": [v.as_dict() for v in violations]},
                indent=2,
            )
        )
    else:
        profile = context.profile_for(args.stack, graph.config)
        print(f"stack {args.stack} ({profile}{', preview' if args.preview else ''}): {len(graph.resources)} resources")
        print("\nport matrix (published on the Docker host)")
        print(f"  {'service':<20} {'host address':<22} {'container':<10} {'proto':<6} routable")
        for row in ports:
            host = f"{row['host_ip']}:{row['host_port']}"
            print(
                f"  {row['service']:<20} {host:<22} {row['container_port']!s:<10} {row['protocol']:<6} "
                f"{'yes' if row['routable'] else 'no'}"
            )
        print(f"\nviolations: {len(result.mandatory)} mandatory, {len(violations) - len(result.mandatory)} advisory")
        for v in violations:
            print(f"  [{v.level}] {v.policy} ({v.requirement}) {v.resource}: {v.message}")
    return 1 if result.mandatory else 0
