"""sslyze against the real nginx running the rendered prod config (R-TLS-1, R-TLS-2).

One scan per session; the tests read its JSON. ``FLY_POTATO_SSLYZE_REPORT=path`` keeps a copy of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.edge.conftest import DOMAIN, RunningEdge

# Mozilla intermediate (guidelines 5.7), IANA names as sslyze reports them.
MOZILLA_TLS12 = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}
MOZILLA_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
MOZILLA_CURVES = {"X25519", "prime256v1", "secp256r1", "secp384r1"}  # sslyze says secp256r1 for prime256v1
# Everything the Mozilla check needs, plus HSTS; robot and the fallback check are cheap on loopback.
SCAN_COMMANDS = [
    "--certinfo",
    "--sslv2",
    "--sslv3",
    "--tlsv1",
    "--tlsv1_1",
    "--tlsv1_2",
    "--tlsv1_3",
    "--elliptic_curves",
    "--http_headers",
    "--compression",
    "--heartbleed",
    "--openssl_ccs",
    "--robot",
    "--reneg",
    "--fallback",
    "--ems",
]


class Scan:
    def __init__(self, document: dict[str, Any], stdout: str, returncode: int) -> None:
        (self.server,) = document["server_scan_results"]
        self.stdout, self.returncode = stdout, returncode
        assert self.server["scan_status"] == "COMPLETED", self.server

    def result(self, command: str) -> dict[str, Any]:
        attempt = self.server["scan_result"][command]
        assert attempt["status"] == "COMPLETED", attempt
        return attempt["result"]  # type: ignore[no-any-return]

    def accepted(self, command: str) -> set[str]:
        return {suite["cipher_suite"]["name"] for suite in self.result(command)["accepted_cipher_suites"]}


@pytest.fixture(scope="session")
def scan(edge: RunningEdge, sslyze_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Scan:
    report = tmp_path_factory.mktemp("sslyze") / "scan.json"
    target = f"{DOMAIN}:{edge.https_port}{{127.0.0.1}}"  # SNI and Host are the domain, traffic stays on loopback
    result = subprocess.run(
        [
            sslyze_bin,
            *SCAN_COMMANDS,
            "--mozilla_config=intermediate",
            f"--certinfo_ca_file={edge.pki.ca}",
            f"--json_out={report}",
            target,
        ],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    if not report.exists():
        pytest.fail(f"sslyze wrote no report (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    if keep := os.environ.get("FLY_POTATO_SSLYZE_REPORT"):
        shutil.copy(report, keep)
    return Scan(json.loads(report.read_text()), result.stdout, result.returncode)


@pytest.mark.parametrize(
    "command", ["ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"]
)
def test_legacy_protocols_are_refused(scan: Scan, command: str) -> None:
    assert scan.accepted(command) == set()


def test_tls_1_2_accepts_only_mozilla_intermediate_ciphers(scan: Scan) -> None:
    accepted = scan.accepted("tls_1_2_cipher_suites")
    assert accepted and accepted <= MOZILLA_TLS12
    assert "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" in accepted


def test_tls_1_3_is_accepted_with_mozilla_suites(scan: Scan) -> None:
    accepted = scan.accepted("tls_1_3_cipher_suites")
    assert accepted and accepted <= MOZILLA_TLS13


def test_only_mozilla_curves(scan: Scan) -> None:
    curves = {curve["name"] for curve in scan.result("elliptic_curves")["supported_curves"]}
    assert curves and curves <= MOZILLA_CURVES


def test_sslyze_finds_the_server_compliant_with_mozilla_intermediate(scan: Scan, edge: RunningEdge) -> None:
    assert scan.returncode == 0, scan.stdout
    assert 'Checking results against Mozilla\'s "intermediate" configuration' in scan.stdout
    assert f"{DOMAIN}:{edge.https_port}: OK - Compliant." in scan.stdout, scan.stdout


def test_hsts_max_age_and_include_subdomains(scan: Scan) -> None:
    hsts = scan.result("http_headers")["strict_transport_security_header"]
    assert hsts is not None
    assert hsts["max_age"] >= 31536000
    assert hsts["include_subdomains"] is True


def test_certificate_is_ecdsa_p256_and_trusted_by_the_test_ca(scan: Scan) -> None:
    info = scan.result("certificate_info")
    assert info["hostname_used_for_server_name_indication"] == DOMAIN
    (deployment,) = info["certificate_deployments"]
    assert deployment["verified_certificate_chain"], "path validation against the test CA"
    trusted_by = {
        r["trust_store"]["name"] for r in deployment["path_validation_results"] if r["was_validation_successful"]
    }
    assert trusted_by == {"Supplied CA file"}
    leaf = deployment["received_certificate_chain"][0]
    assert leaf["public_key"]["algorithm"] == "ECPublicKey"
    assert leaf["public_key"]["ec_curve_name"] == "secp256r1"
    assert deployment["ocsp_response"] is None, "no responder named, nothing stapled (R-TLS-3)"


def test_no_session_renegotiation_or_compression_weakness(scan: Scan) -> None:
    assert scan.result("session_renegotiation")["is_vulnerable_to_client_renegotiation_dos"] is False
    assert scan.result("tls_compression")["supports_compression"] is False
    assert scan.result("heartbleed")["is_vulnerable_to_heartbleed"] is False
    assert scan.result("robot")["robot_result"] in {"NOT_VULNERABLE_NO_ORACLE", "NOT_VULNERABLE_RSA_NOT_SUPPORTED"}


def test_scan_summary_is_readable(scan: Scan, edge: RunningEdge) -> None:
    """Keeps the human summary next to the JSON for the issue note."""
    summary = Path(edge.layout.root) / "sslyze-summary.txt"
    summary.write_text(scan.stdout)
    assert "SCAN RESULTS FOR" in scan.stdout
