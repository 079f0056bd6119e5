"""`python -m policy_plan`: the offline policy check a pull request runs (`make plan STACK=…`)."""

from __future__ import annotations

import json

import pytest

from policy_plan import plan


def test_prod_plan_passes_and_prints_count_ports_and_violations(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan.main(["--stack", "prod"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("stack prod (prod): ")
    assert "resources" in out and "port matrix" in out and "violations: 0 mandatory" in out
    assert "0.0.0.0:443" in out


def test_json_is_one_object_with_resources_ports_and_violations(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan.main(["--stack", "prod", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"resources", "ports", "violations"}
    assert document["resources"] > 0
    routable = {(p["service"], p["host_port"]) for p in document["ports"] if p["routable"]}
    assert routable == {("nginx", 443), ("nginx", 80)}
    assert {v["level"] for v in document["violations"]} <= {"advisory"}


def test_a_mandatory_violation_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = plan.main(
        ["--stack", "prod", "--json", "--set", "publish.postgres=public", "--set", "public_bind_address=0.0.0.0"]
    )
    assert code == 1
    violations = json.loads(capsys.readouterr().out)["violations"]
    r_net_2 = [v for v in violations if v["requirement"] == "R-NET-2"]
    assert [(v["resource"], v["level"]) for v in r_net_2] == [("postgres", "mandatory")]
    assert "5433" in r_net_2[0]["message"]


def test_a_dev_stack_on_a_routable_address_is_refused_before_the_policies(capsys: pytest.CaptureFixture[str]) -> None:
    """R-NET-3 is mandatory in every profile: the settings stop a dev stack bound to 0.0.0.0 (exit 2)."""
    assert plan.main(["--stack", "dev", "--set", "public_bind_address=0.0.0.0"]) == 2
    assert 'fly-potato:public_bind_address = "0.0.0.0" publishes a dev stack on the network' in capsys.readouterr().err


def test_dev_violations_other_than_r_net_3_are_advisory_and_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan.main(["--stack", "dev", "--json", "--set", "publish.prometheus=none"]) == 0
    violations = json.loads(capsys.readouterr().out)["violations"]
    assert {v["level"] for v in violations} <= {"advisory"}


def test_a_stack_config_error_prints_its_sentence_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan.main(["--stack", "prod", "--set", "ports.postgres=70000"]) == 2
    err = capsys.readouterr().err
    assert "fly-potato:ports.postgres = 70000 is not a TCP port (1-65535)" in err


def test_policy_config_file_overrides_levels(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    levels = tmp_path / "levels.json"
    levels.write_text(json.dumps({"all": "advisory"}))
    args = ["--stack", "prod", "--set", "publish.postgres=public", "--policy-config", str(levels)]
    assert plan.main(args) == 0
    assert "[advisory] other-bindings-loopback" in capsys.readouterr().out
