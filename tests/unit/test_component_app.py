"""The app zone's component alone, from hand-made args under the mocks: AppServices (R-SEC-1, R-SEC-2)."""

from __future__ import annotations

from typing import Any

import pytest

from components.app_services import AppArgs, AppServices
from components.hardened_container import SECRETS_DIR
from tests.support.components import children, component, component_graph
from tests.unit.test_backup_wiring import env
from tests.unit.test_component_data import secret_files, service


def build(port: int) -> Any:
    def construct(_settings: Any, placement: Any, zones: Any) -> None:
        app = AppServices(
            "app",
            AppArgs(
                placement=placement,
                zones=zones,
                image="fly-potato/backend:test",
                port=port,
                profile="prod",
                env={"FLY_POTATO_PUBLIC_URL": "https://fly.example"},
                secret_files={"database_url": "postgresql://app@postgres/app"},
            ),
        )
        assert app.url == f"http://backend:{port}"

    return construct


@pytest.mark.parametrize("port", [80, 8000])
def test_app_services_alone(port: int) -> None:
    graph = component_graph("dev", build(port))
    app = component(graph, "fly-potato:app:AppServices")
    (hardened,) = children(graph, app)
    assert hardened.name == "app-backend"
    backend = service(graph, "app-backend")
    variables = env(backend)
    assert variables["FLY_POTATO_PROFILE"] == "prod"
    assert variables["FLY_POTATO_PORT"] == str(port)
    assert variables["FLY_POTATO_PUBLIC_URL"] == "https://fly.example"
    # Secrets arrive as files; the environment only says where.
    assert variables["FLY_POTATO_DATABASE_URL_FILE"] == f"{SECRETS_DIR}/database_url"
    assert secret_files(graph, "backend") == {f"{SECRETS_DIR}/database_url"}
    sysctls = backend.prop("sysctls") or {}
    assert (sysctls.get("net.ipv4.ip_unprivileged_port_start") == "0") == (port < 1024)
