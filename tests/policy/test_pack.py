"""The pack's shape (one policy per module, ids, R-… in descriptions, __main__ builds only the pack),
its stack-decided enforcement with config override, and the real analyzer process over gRPC."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel

from policy import context
from policy.pack import POLICIES, level_of, pack_arguments
from policy_plan import crossguard
from tests.policy.support import check, evaluate

POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"
REQUIREMENTS = {
    "R-NET-1",
    "R-NET-2",
    "R-NET-3",
    "R-NET-4",
    "R-NET-5",
    "R-NET-6",
    "R-TLS-1",
    "R-TLS-2",
    "R-TLS-4",
    "R-TLS-5",
    "R-AUTH-1",
    "R-AUTH-2",
    "R-SEC-1",
    "R-SEC-2",
    "R-SEC-3",
    "R-SEC-4",
    "R-SEC-5",
}


def test_one_policy_per_module_each_citing_its_requirement() -> None:
    modules = sorted(p.stem for p in (POLICY_DIR / "rules").glob("*.py") if not p.stem.startswith("_"))
    assert [id(importlib.import_module(f"policy.rules.{m}").POLICY) for m in modules] != []
    assert {id(importlib.import_module(f"policy.rules.{m}").POLICY) for m in modules} == {id(p) for p in POLICIES}
    assert len({p.name for p in POLICIES}) == len(POLICIES), "unique ids"
    for policy in POLICIES:
        requirement = policy.requirement  # type: ignore[attr-defined]
        assert policy.description.startswith(f"{requirement}: ")
        assert "\n" not in policy.description
    assert {p.requirement for p in POLICIES} == REQUIREMENTS  # type: ignore[attr-defined]


def test_main_only_builds_the_pack() -> None:
    tree = ast.parse((POLICY_DIR / "__main__.py").read_text())
    calls = [n.value for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    names = [ast.unparse(c.func) for c in calls]
    assert names == ["sys.path.insert", "PolicyPack"]
    assert not [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Assign))]


# What the pack's own virtualenv holds (policy/requirements.txt; pyyaml comes with pulumi).
PACK_RUNTIME = {"pulumi", "pulumi_policy", "crossplane", "yaml"}


def test_the_pack_imports_only_what_its_virtualenv_holds() -> None:
    """The CLI runs the pack with policy/.venv: the pack and the identifiers it shares with the program (wire/)
    import the standard library, that runtime and each other; never the program's provider SDKs, components/
    or the offline plan. wire/ imports nothing at all."""
    root = POLICY_DIR.parent
    allowed = set(sys.stdlib_module_names) | PACK_RUNTIME | {"policy", "wire"}
    sources = [*POLICY_DIR.glob("*.py"), *POLICY_DIR.glob("rules/*.py"), *(root / "wire").glob("*.py")]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.relative_to(root)} imports {name}"
    wire = ast.parse((root / "wire" / "__init__.py").read_text())
    assert not [node for node in ast.walk(wire) if isinstance(node, (ast.Import, ast.ImportFrom))]


@pytest.mark.parametrize(
    ("stack", "config", "expected"),
    [
        ("prod", {"profile": "prod"}, "prod"),
        ("dev", {"profile": "dev"}, "dev"),
        ("staging", {"profile": "prod"}, "prod"),
        ("prod-eu", {}, "prod"),
        ("dev-alice", {}, "dev"),
        ("anything", {}, "prod"),  # unknown stacks get the strict rules
    ],
)
def test_profile_comes_from_config_then_the_stack_name(stack: str, config: dict[str, Any], expected: str) -> None:
    assert context.profile_for(stack, config) == expected


def test_prod_is_mandatory_dev_advisory_and_config_overrides() -> None:
    prod, dev = context.make("prod", {"profile": "prod"}), context.make("dev", {"profile": "dev"})
    net1 = next(p for p in POLICIES if p.name == "public-bindings-nginx-only")
    rotation = next(p for p in POLICIES if p.name == "secret-rotation-age")
    assert level_of(net1, prod) == EnforcementLevel.MANDATORY
    assert level_of(net1, dev) == EnforcementLevel.ADVISORY
    assert level_of(rotation, prod) == EnforcementLevel.ADVISORY
    assert level_of(net1, prod, {"all": "advisory"}) == EnforcementLevel.ADVISORY
    assert (
        level_of(net1, dev, {"public-bindings-nginx-only": {"enforcementLevel": "mandatory"}})
        == EnforcementLevel.MANDATORY
    )
    assert level_of(rotation, prod, {"secret-rotation-age": "mandatory"}) == EnforcementLevel.MANDATORY


def test_policy_config_can_relax_or_disable_a_failing_prod_rule() -> None:
    graph = evaluate("prod", {"publish": {"postgres": "public"}, "public_bind_address": "0.0.0.0"})
    assert check(graph).mandatory
    relaxed = check(graph, policy_config={"all": "advisory"})
    assert relaxed.mandatory == [] and relaxed.violations
    disabled = check(graph, policy_config={"all": "disabled"})
    assert disabled.violations == []


def test_pack_arguments_follow_the_engine_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_STACK", "prod")
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"fly-potato:profile": "prod", "docker:host": "unix:///x"}))
    assert pack_arguments()["enforcement_level"] == EnforcementLevel.MANDATORY
    monkeypatch.setenv("PULUMI_STACK", "dev")
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"fly-potato:profile": "dev"}))
    assert pack_arguments()["enforcement_level"] == EnforcementLevel.ADVISORY


@pytest.fixture
def analyzer() -> Any:
    """The pack as the CLI starts it for a prod stack: `python policy/__main__.py` serving gRPC."""
    graph = evaluate("prod")
    env = {
        **os.environ,
        "PULUMI_PROJECT": "fly-potato",
        "PULUMI_STACK": "prod",
        "PULUMI_DRY_RUN": "true",
        "PULUMI_CONFIG": json.dumps(
            {f"fly-potato:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in graph.config.items()}
        ),
    }
    process = subprocess.Popen(
        [sys.executable, str(POLICY_DIR / "__main__.py")], stdout=subprocess.PIPE, env=env, cwd=POLICY_DIR
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel), graph
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_pack_process_answers_the_engine(analyzer: Any) -> None:
    stub, graph = analyzer
    info = stub.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "fly-potato"
    levels = {p.name: p.enforcementLevel for p in info.policies}
    assert set(levels) == {p.name for p in POLICIES}
    assert levels["public-bindings-nginx-only"] == analyzer_pb2.MANDATORY
    assert levels["secret-rotation-age"] == analyzer_pb2.ADVISORY

    postgres = graph.containers()["postgres"]
    properties = struct_pb2.Struct()
    wire = crossguard.to_wire(postgres.inputs)
    wire["user"] = "0:0"  # a resource-level rule: the engine sends one resource at a time
    wire["image"] = "postgis/postgis:15-3.4"
    properties.update(wire)
    response = stub.Analyze(
        analyzer_pb2.AnalyzeRequest(type=postgres.type, properties=properties, urn=postgres.urn, name=postgres.name)
    )
    found = {(d.policyName, d.enforcementLevel) for d in response.diagnostics}
    assert found == {
        ("container-hardening", analyzer_pb2.MANDATORY),
        ("image-digest-pinned", analyzer_pb2.MANDATORY),
    }
    assert any("root" in d.message for d in response.diagnostics)
