"""Fixtures for the edge tests: Debian's nginx running the rendered prod config on loopback, with a test
certificate from a throwaway CA, in front of stub upstreams (backend, Keycloak, oauth2-proxy, Postgres).

Nothing here skips: a missing nginx, openssl or sslyze fails with a sentence naming scripts/deps/nginx.sh.
Only loopback addresses are used.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.nginx_conf import DHPARAM_PEM, EdgeLayout, render_nginx_conf
from components.settings import Settings, parse_settings
from policy_plan.program import stack_config

INSTALL_HINT = "run scripts/deps/nginx.sh to install Debian's nginx, its stream module, openssl and sslyze"
SSLYZE_VERSION = "6.3.1"
DOMAIN = "flypotato.example.com"
SESSION_COOKIE = "_fly_potato_session=valid-session"
STUB_TOKEN = "stub-access-token"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.nginx)


def _binary(env: str, default: str, what: str) -> str:
    path = os.environ.get(env) or default
    if not (shutil.which(path) or (Path(path).is_file() and os.access(path, os.X_OK))):
        pytest.fail(f"{what} not found at {path}; {INSTALL_HINT} (or set {env}).", pytrace=False)
    return shutil.which(path) or path


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    binary = _binary("NGINX_BIN", "/usr/sbin/nginx", "nginx")
    if not Path(EdgeLayout().stream_module).is_file():
        pytest.fail(f"nginx's stream module {EdgeLayout().stream_module} is missing; {INSTALL_HINT}.", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def sslyze_bin() -> str:
    default = Path.home() / ".cache" / "fly-potato" / f"sslyze-{SSLYZE_VERSION}" / "bin" / "sslyze"
    home = os.environ.get("FLY_POTATO_SSLYZE_HOME")
    return _binary("FLY_POTATO_SSLYZE", str(Path(home) / "bin" / "sslyze") if home else str(default), "sslyze")


# --- certificates -------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    chain: Path
    key: Path


def _openssl(*args: str) -> None:
    binary = _binary("OPENSSL_BIN", "openssl", "openssl")
    subprocess.run([binary, *args], check=True, capture_output=True)


def make_pki(directory: Path) -> Pki:
    """An ECDSA P-256 CA and a 90-day server certificate for DOMAIN, like the internal CA issues."""
    (directory / "tls").mkdir(parents=True, exist_ok=True)
    (directory / "secrets").mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, chain = (
        directory / "secrets" / "server.key",
        directory / "server.csr",
        directory / "tls" / "server-chain.pem",
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "365",
        "-subj",
        "/O=fly-potato test/CN=fly-potato test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    _openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={DOMAIN}")
    extensions = directory / "server.ext"
    extensions.write_text(
        f"subjectAltName=DNS:{DOMAIN}\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=critical,CA:FALSE\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(chain),
        "-days",
        "90",
        "-sha256",
        "-extfile",
        str(extensions),
    )
    (directory / "tls" / "ffdhe2048.pem").write_text(DHPARAM_PEM)
    for path in (chain, key, directory / "tls" / "ffdhe2048.pem"):
        path.chmod(0o644)  # nginx's master reads them; as root its workers run as nobody
    return Pki(ca=ca, chain=chain, key=key)


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fly-potato-edge-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pki(workdir: Path) -> Pki:
    return make_pki(workdir)


# --- stub upstreams -----------------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Stub:
    name: str
    port: int
    seen: list[Seen] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


def _http_stub(name: str) -> tuple[Stub, ThreadingHTTPServer]:
    stub_ref: dict[str, Stub] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            stub = stub_ref["stub"]
            stub.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            status, headers = 200, {"Content-Type": "application/json"}
            if name == "oauth2_proxy" and self.path.startswith("/oauth2/auth"):
                if SESSION_COOKIE in (self.headers.get("Cookie") or ""):
                    status = 202
                    headers |= {
                        "X-Auth-Request-User": "analyst",
                        "X-Auth-Request-Email": "analyst@example.com",
                        "X-Auth-Request-Access-Token": STUB_TOKEN,
                    }
                else:
                    status = 401
            elif name == "oauth2_proxy" and self.path.startswith("/oauth2/sign_in"):
                status = 302
                headers["Location"] = f"https://{DOMAIN}/sso/realms/test/protocol/openid-connect/auth"
            body = json.dumps(
                {"upstream": name, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
            ).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stub = Stub(name, server.server_address[1])
    stub_ref["stub"] = stub
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return stub, server


def _tcp_echo() -> tuple[int, socket.socket]:
    """Stands in for Postgres behind the DataLens proxy: echoes what it receives."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], listener


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- nginx --------------------------------------------------------------------------------------------


def layout_under(root: Path, *, loopback_upstreams: bool) -> EdgeLayout:
    (root / "tmp").mkdir(exist_ok=True)
    (root / "tmp").chmod(0o755)
    return EdgeLayout(
        root=str(root),
        temp_dir=str(root / "tmp"),
        access_log=str(root / "access.log"),
        error_log=str(root / "error.log"),
        listen_address="127.0.0.1" if loopback_upstreams else None,
        resolver=None if loopback_upstreams else EdgeLayout().resolver,
        upstream_hosts=dict.fromkeys(("backend", "keycloak", "oauth2_proxy", "postgres"), "127.0.0.1")
        if loopback_upstreams
        else {},
    )


@dataclass
class RunningEdge:
    settings: Settings
    layout: EdgeLayout
    pki: Pki
    conf: str
    http_port: int
    https_port: int
    datalens_port: int
    stubs: dict[str, Stub]

    def access_log(self) -> str:
        return Path(self.layout.access_log).read_text()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], error_log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited with {process.returncode}:\n{error_log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on 127.0.0.1:{port} within 10 s:\n{error_log.read_text()}")


@pytest.fixture(scope="session")
def edge(nginx_bin: str, workdir: Path, pki: Pki) -> Iterator[RunningEdge]:
    """The rendered prod config (DataLens allow-listed for 127.0.0.1 only) served by a real nginx."""
    stubs: dict[str, Stub] = {}
    servers: list[ThreadingHTTPServer] = []
    for name in ("backend", "keycloak", "oauth2_proxy"):
        stubs[name], server = _http_stub(name)
        servers.append(server)
    postgres_port, echo = _tcp_echo()
    http_port, https_port, datalens_port = free_port(), free_port(), free_port()
    settings = parse_settings(
        stack_config(
            "prod",
            {
                # On loopback, as the e2e tier deploys prod: a routable bind answers on 443 and 80 only (R-NET-1).
                "public_bind_address": "127.0.0.1",
                "ports.nginx_http": http_port,
                "ports.nginx_https": https_port,
                "ports.datalens": datalens_port,
                # Host ports default to the catalog's, not to overridden container ports.
                "host_ports.nginx_http": http_port,
                "host_ports.nginx_https": https_port,
                "host_ports.datalens": datalens_port,
                "ports.backend": stubs["backend"].port,
                "ports.keycloak": stubs["keycloak"].port,
                "ports.oauth2_proxy": stubs["oauth2_proxy"].port,
                "ports.postgres": postgres_port,
                "datalens.allow_list": ["127.0.0.1/32"],
                "datalens.embed_origins": ["https://datalens.yandex.ru"],
                # Small limits, so the tests reach them with a few requests.
                "edge.max_body_mb": 1,
                "edge.api_rate_per_second": 2,
                "edge.api_burst": 10,
            },
        ),
        stack="prod",
    )
    layout = layout_under(workdir, loopback_upstreams=True)
    conf = render_nginx_conf(settings, layout=layout)
    Path(layout.conf).write_text(conf)
    error_log = Path(layout.error_log)
    process = subprocess.Popen(
        [nginx_bin, "-e", str(error_log), "-c", layout.conf, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for port in (http_port, https_port, datalens_port):
            _wait_for_port(port, process, error_log)
        yield RunningEdge(settings, layout, pki, conf, http_port, https_port, datalens_port, stubs)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for server in servers:
            server.shutdown()
            server.server_close()
        echo.close()
