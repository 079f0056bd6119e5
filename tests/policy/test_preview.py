"""Mandatory rules must not quietly turn into warnings at `pulumi preview` because a checked value
is unknown until apply. pulumi-policy raises UnknownValueError when a policy reads an unknown value
through its proxy, and the SDK reports that as an *advisory* "can't run policy during preview"; the
pack's rules read plain copies instead and report an unknown checked value as a violation at the
policy's own level. The program renders what is checked in plain Python, so at preview of a new stack
(every provider output unknown) the checked values are known."""

from __future__ import annotations

import pytest
from pulumi.output import Unknown
from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policy import context
from policy.nginx import main_path
from policy.pack import POLICIES
from policy.props import ContainerView, contains_unknown, plain
from policy_plan import crossguard
from policy_plan.program import PlannedResource, ProgramGraph
from tests.policy.support import NGINX_CONF, check, edit_upload, evaluate

# What the policies read from each container, network and certificate resource.
CONTAINER_KEYS = (
    "ports",
    "image",
    "user",
    "privileged",
    "securityOpts",
    "capabilities",
    "readOnly",
    "memory",
    "cpus",
    "ulimits",
    "healthcheck",
    "restart",
    "logDriver",
    "logOpts",
    "mounts",
    "networksAdvanced",
    "labels",
    "envs",
    "command",
    "mustRun",
)
OTHER_KEYS = {
    "docker:index/network:Network": ("name", "internal", "options", "labels"),
    "tls:index/privateKey:PrivateKey": ("algorithm", "ecdsaCurve", "rsaBits"),
    "tls:index/selfSignedCert:SelfSignedCert": ("validityPeriodHours", "earlyRenewalHours", "isCaCertificate"),
    "tls:index/locallySignedCert:LocallySignedCert": ("validityPeriodHours", "earlyRenewalHours"),
    "random:index/randomPassword:RandomPassword": ("keepers",),
    "random:index/randomBytes:RandomBytes": ("keepers", "length"),
}
UNKNOWN_MARKERS = ("not known at preview", "can't run policy during preview")


@pytest.fixture(scope="module")
def preview() -> ProgramGraph:
    return evaluate("prod", preview=True)


def _view(resource: PlannedResource) -> ContainerView:
    return ContainerView(resource.name, resource.urn, plain(crossguard.policy_props(resource)))


def test_the_preview_really_has_unknowns(preview: ProgramGraph) -> None:
    # Generated secrets are unknown before the first update, so the files built from them are too.
    postgres = _view(preview.containers()["postgres"])
    assert contains_unknown(postgres.uploads())


def test_checked_container_properties_are_known_at_preview(preview: ProgramGraph) -> None:
    unknown = {
        (service, key)
        for service, resource in preview.containers().items()
        for key in CONTAINER_KEYS
        if contains_unknown(_view(resource).props.get(key))
    }
    assert unknown == set()


def test_checked_properties_of_networks_certificates_and_secrets_are_known_at_preview(preview: ProgramGraph) -> None:
    unknown = {
        (resource.name, key)
        for resource in preview.resources
        for key in OTHER_KEYS.get(resource.type, ())
        if contains_unknown(plain(crossguard.policy_props(resource)).get(key))
    }
    assert unknown == set()


def test_the_rendered_nginx_config_is_known_at_preview(preview: ProgramGraph) -> None:
    nginx = _view(preview.containers()["nginx"])
    assert main_path(nginx) == NGINX_CONF
    assert isinstance(nginx.uploads()[NGINX_CONF], str)


@pytest.mark.parametrize("policy", [p.name for p in POLICIES])
def test_no_policy_meets_an_unknown_value_at_preview(preview: ProgramGraph, policy: str) -> None:
    result = check(preview)
    assert [
        v.message
        for v in result.violations
        if v.policy == policy and any(marker in v.message for marker in UNKNOWN_MARKERS)
    ] == []


def test_an_unknown_checked_value_is_a_mandatory_violation(preview: ProgramGraph) -> None:
    edit_upload(preview, "nginx", NGINX_CONF, lambda _: Unknown())
    result = check(preview)
    unknown = {
        (v.policy, v.level) for v in result.violations if "not known at preview" in v.message and v.resource == "nginx"
    }
    assert unknown == {
        ("tls-protocols-ciphers", "mandatory"),
        ("tls-hsts", "mandatory"),
        ("http-redirect-only", "mandatory"),
        ("keycloak-proxy-exposure", "mandatory"),
    }


def test_the_sdk_alone_would_turn_it_into_an_advisory_note(preview: ProgramGraph) -> None:
    edit_upload(preview, "nginx", NGINX_CONF, lambda _: Unknown())

    nginx = preview.files_containers()["nginx"].name  # the resource that carries nginx's files

    def naive(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.name != nginx:
            return
        for upload in args.props.get("uploads") or []:
            if "ssl_protocols TLSv1 " in upload["content"]:  # reading an unknown raises UnknownValueError
                report("TLSv1 enabled", None)

    policy = ResourceValidationPolicy("naive-tls", "R-TLS-1: naive", naive, EnforcementLevel.MANDATORY)
    result = crossguard.run(preview, _ctx(preview), policies=[policy])
    assert {(v.resource, v.level) for v in result.violations} == {(nginx, "advisory")}
    assert "can't run policy during preview" in result.violations[0].message


def _ctx(graph: ProgramGraph) -> context.StackContext:
    return context.make(graph.stack, graph.config)
