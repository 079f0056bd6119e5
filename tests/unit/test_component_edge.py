"""The edge zone's components alone, from hand-made args under the mocks: EdgeServices and its
ServerCertificate, from the internal CA or a provided chain (R-NET-1, R-TLS-3, R-TLS-4, R-TLS-5, R-SEC-1)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from components.edge_services import LAYOUT, EdgeArgs, EdgeServices
from components.server_certificate import CertificateArgs, ProvidedCertificate
from policy_plan.program import ProgramGraph, is_secret
from tests.support.components import children, component, component_graph
from tests.unit.test_component_data import service
from tests.unit.test_edge import CERT_WITH_OCSP, CERT_WITHOUT_OCSP, PLACEHOLDER_KEY

NGINX_CONF = "worker_processes 1;  # hand-made\n"


def certificate(provided: ProvidedCertificate | None = None) -> CertificateArgs:
    return CertificateArgs(
        domain="fly.example", organization="fly-potato t1", validity_days=60, renew_before_days=20, provided=provided
    )


def build(cert: CertificateArgs, *, redirects_http: bool) -> Any:
    def construct(_settings: Any, placement: Any, zones: Any) -> None:
        edge = EdgeServices(
            "edge",
            EdgeArgs(
                placement=placement,
                zones=zones,
                image="nginx:test",
                nginx_conf=NGINX_CONF,
                certificate=cert,
                http_port=8080,
                redirects_http=redirects_http,
            ),
        )
        assert edge.certificate.ocsp_stapling is cert.ocsp_stapling

    return construct


def uploads(graph: ProgramGraph) -> dict[str, Any]:
    loader = graph.files_containers()["nginx"]
    assert is_secret(loader.inputs["uploads"]), "the upload list carries the key as a secret"
    return {u["file"]: u for u in loader.prop("uploads")}


@pytest.mark.parametrize("redirects_http", [True, False])
def test_edge_alone_with_the_internal_ca(redirects_http: bool) -> None:
    graph = component_graph("dev", build(certificate(), redirects_http=redirects_http))
    edge = component(graph, "fly-potato:edge:EdgeServices")
    tls = component(graph, "fly-potato:tls:ServerCertificate")
    assert {r.name for r in children(graph, edge)} == {"edge-tls", "edge-nginx"}
    assert {r.name for r in children(graph, tls)} == {
        "edge-tls-ca-key",
        "edge-tls-ca",
        "edge-tls-server-key",
        "edge-tls-server-csr",
        "edge-tls-server",
    }
    csr = graph.by_name("edge-tls-server-csr")
    assert csr.prop("dnsNames") == ["fly.example"]
    assert csr.prop("subject")["organization"] == "fly-potato t1"
    server = graph.by_name("edge-tls-server")
    assert (server.prop("validityPeriodHours"), server.prop("earlyRenewalHours")) == (60 * 24, 20 * 24)
    nginx = service(graph, "edge-nginx")
    assert nginx.prop("image") == "nginx:test"
    assert nginx.prop("command") == ["nginx", "-e", "stderr", "-c", LAYOUT.conf, "-g", "daemon off;"]
    expect = "301" if redirects_http else "200"
    assert f"grep -q ' {expect} '" in nginx.prop("healthcheck")["tests"][-1]
    assert "8080" in nginx.prop("healthcheck")["tests"][-1]
    files = uploads(graph)
    assert files[LAYOUT.conf]["content"] == NGINX_CONF
    assert files[LAYOUT.private_key]["permissions"] == "0400"


@pytest.mark.parametrize(("chain", "stapling"), [(CERT_WITH_OCSP, True), (CERT_WITHOUT_OCSP, False)])
def test_edge_alone_serves_a_provided_chain_as_given(chain: str, stapling: bool) -> None:
    cert = certificate(ProvidedCertificate(chain, SecretStr(PLACEHOLDER_KEY)))
    assert cert.ocsp_stapling is stapling
    graph = component_graph("dev", build(cert, redirects_http=True))
    assert not [r for r in graph.resources if r.type.startswith("tls:")], "no internal CA"
    files = uploads(graph)
    assert files[LAYOUT.certificate]["content"] == chain
    assert files[LAYOUT.private_key]["content"] == PLACEHOLDER_KEY
    assert "not-a-real-key" not in repr(cert), "the key never shows in a repr"
