"""The policy pack on Swarm services through the real engine: ``pulumi preview --policy-pack policy`` of a tiny
throwaway program against the lab's manager. A hardened nginx service by digest, publishing 443 in host mode on the
edge nodes, with the prod nginx.conf as its Swarm config (what R-TLS-1/2/5 read), passes; the same with a postgres service publishing 5432 fails on R-NET-1, naming that service.
Preview only: nothing is created on the swarm.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.swarm.lab import RUN_DIR, SwarmLab

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TOOLCHAIN = Path(os.environ.get("FLY_POTATO_TOOLCHAIN", Path.home() / ".cache/fly-potato/toolchain"))
STACK = "swarm-policy"  # not dev*/local*: the pack applies the prod profile, mandatory

PROGRAM = """
import pulumi
import pulumi_docker as docker

config = pulumi.Config()
provider = docker.Provider("swarm", host=config.require("host"))
opts = pulumi.ResourceOptions(provider=provider)
edge = docker.Network(
    "zones-edge",
    name="fp-policy-edge",
    driver="overlay",
    labels=[docker.NetworkLabelArgs(label="org.flypotato.zone", value="edge")],
    opts=opts,
)


# nginx's real prod config (R-TLS-1/2/5 read it), as the Swarm config the service mounts.
import base64
from components.edge_services import LAYOUT
from components.nginx_conf import render_nginx_conf
from components.settings import parse_settings
from policy_plan.program import stack_config

NGINX_CONF = render_nginx_conf(parse_settings(stack_config("prod"), stack="prod"), ocsp_stapling=False, layout=LAYOUT)
nginx_conf = docker.ServiceConfig(
    "nginx-conf",
    name="fp-policy-nginx-conf",
    data=base64.b64encode(NGINX_CONF.encode()).decode(),
    opts=opts,
)


def service(name, image, port, target, constraint):
    labels = [
        docker.ServiceLabelArgs(label="org.flypotato.service", value=name),
        docker.ServiceLabelArgs(label="org.flypotato.zones", value="edge" if name == "nginx" else ""),
    ]
    return docker.Service(
        name,
        name=f"fp-policy-{name}",
        labels=labels,
        mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=1)),
        endpoint_spec=docker.ServiceEndpointSpecArgs(
            mode="dnsrr",
            ports=[
                docker.ServiceEndpointSpecPortArgs(
                    target_port=target, published_port=port, protocol="tcp", publish_mode="host"
                )
            ],
        ),
        task_spec=docker.ServiceTaskSpecArgs(
            container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                image=image,
                commands=["nginx", "-c", LAYOUT.conf, "-g", "daemon off;"] if name == "nginx" else None,
                configs=[
                    docker.ServiceTaskSpecContainerSpecConfigArgs(
                        config_id=nginx_conf.id,
                        config_name=nginx_conf.name,
                        file_name=LAYOUT.conf,
                        file_uid="101",
                        file_gid="101",
                        file_mode=0o440,
                    )
                ]
                if name == "nginx"
                else None,
                user="101:101",
                read_only=True,
                cap_drops=["ALL"],
                env={"LOG_LEVEL": "info"},
                healthcheck=docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
                    tests=["CMD", "true"], interval="10s", timeout="3s", retries=3
                ),
            ),
            placement=docker.ServiceTaskSpecPlacementArgs(constraints=[constraint]),
            resources=docker.ServiceTaskSpecResourcesArgs(
                limits=docker.ServiceTaskSpecResourcesLimitsArgs(memory_bytes=128 * 1024 * 1024, nano_cpus=500_000_000)
            ),
            restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(condition="any"),
            networks_advanceds=[docker.ServiceTaskSpecNetworksAdvancedArgs(name="fp-policy-edge")]
            if name == "nginx"
            else [],
            log_driver=docker.ServiceTaskSpecLogDriverArgs(
                name="json-file", options={"max-size": "10m", "max-file": "3"}
            ),
        ),
        opts=pulumi.ResourceOptions(provider=provider, depends_on=[edge]),
    )


service("nginx", config.require("image"), 443, 8443, "node.labels.fly-potato.role==edge")
if config.get_bool("with_postgres"):
    service("postgres", config.require("image"), 5432, 5432, "node.labels.fly-potato.role==data")
"""


def _policy_events(stdout: str) -> list[dict[str, Any]]:
    """The policy events of ``pulumi preview --json`` streaming engine events (one JSON object a line)."""
    events = []
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "policyEvent" in event:
            events.append(event["policyEvent"])
    return events


class Program:
    """The throwaway project: its own file backend and passphrase, the repository's venv, the project's toolchain."""

    def __init__(self, root: Path, image: str) -> None:
        self.root = root
        (root / "state").mkdir()
        (root / "Pulumi.yaml").write_text(
            textwrap.dedent(f"""\
                name: fp-swarm-policy
                runtime:
                  name: python
                  options:
                    virtualenv: {ROOT / ".venv"}
                """)
        )
        (root / "__main__.py").write_text(PROGRAM)
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "DOCKER_HOST"},
            "PATH": f"{TOOLCHAIN / 'bin'}:{os.environ['PATH']}",
            "PULUMI_HOME": os.environ.get("PULUMI_HOME", str(TOOLCHAIN / "pulumi-home")),
            "PULUMI_BACKEND_URL": f"file://{root / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": secrets.token_urlsafe(24),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
            "PULUMI_ENABLE_STREAMING_JSON_PREVIEW": "true",  # --json streams the engine events
            "PYTHONPATH": str(ROOT),  # the program renders nginx's config with the project's own code
        }
        self.pulumi("stack", "init", STACK)
        self.pulumi("config", "set", "host", f"unix://{RUN_DIR / 'node1.sock'}")
        self.pulumi("config", "set", "image", image)
        self.pulumi("config", "set", "fly-potato:profile", "prod")
        self.pulumi("config", "set", "--path", "fly-potato:tls.mode", "provided")  # no certificate resource here

    def pulumi(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["pulumi", *args, "--non-interactive"] if args[0] != "config" else ["pulumi", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def preview(self) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
        done = self.pulumi("preview", "--policy-pack", str(ROOT / "policy"), "--json", check=False)
        return done, _policy_events(done.stdout)


@pytest.fixture(scope="module")
def program(swarm: SwarmLab, tmp_path_factory: pytest.TempPathFactory) -> Program:
    if not (TOOLCHAIN / "bin/pulumi").exists():
        pytest.fail(f"no Pulumi CLI in {TOOLCHAIN / 'bin'}: run 'make toolchain'", pytrace=False)
    if not (ROOT / "policy/.venv/bin/python").exists():
        pytest.fail("the policy pack's virtualenv policy/.venv is missing: run 'make policy-venv'", pytrace=False)
    image = swarm.push("fly-potato/nginx:1.22.1")
    return Program(tmp_path_factory.mktemp("swarm-policy"), image)


def test_a_hardened_nginx_service_on_the_edge_passes(program: Program) -> None:
    program.pulumi("config", "set", "with_postgres", "false")
    done, events = program.preview()
    mandatory = [e for e in events if e.get("enforcementLevel") == "mandatory"]
    assert done.returncode == 0, f"{mandatory}\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    assert mandatory == []
    # The pack did run: only its advisory rotation note (this throwaway stack records no rotation date).
    assert {(e["policyName"], e["enforcementLevel"]) for e in events} == {("secret-rotation-age", "advisory")}, events


def test_a_published_postgres_fails_the_preview_on_r_net_1(program: Program) -> None:
    program.pulumi("config", "set", "with_postgres", "true")
    done, events = program.preview()
    assert done.returncode != 0, done.stdout[-3000:]
    found = {
        (e["policyName"], e.get("resourceUrn", "").rsplit("::", 1)[-1], e["enforcementLevel"])
        for e in events
        if e.get("enforcementLevel") == "mandatory"
    }
    assert ("public-bindings-nginx-only", "postgres", "mandatory") in found, events
    assert {name for _, name, _ in found} == {"postgres"}, events  # nginx stays clean
    [net1] = [e for e in events if e["policyName"] == "public-bindings-nginx-only"]
    assert "docker.Service postgres" in net1["message"] and "SSH tunnel" in net1["message"]
