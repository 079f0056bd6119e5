"""The policy pack through the real engine: ``pulumi preview --policy-pack policy`` of a prod-profile stack
(DNS preflight off, as on an air-gapped test host) passes, and the same stack with postgres published
publicly fails naming R-NET-1. Previews only: nothing is deployed. ``make e2e``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pulumi import automation as auto

from tests.e2e.engine import EngineStack, EngineUnavailable, require_engine

pytestmark = pytest.mark.e2e


@pytest.fixture
def prod_stack() -> Iterator[EngineStack]:
    try:
        require_engine()
    except EngineUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    stack = EngineStack("e2e-prod", base="prod", ports={}, overrides={"features.dns_preflight": False})
    try:
        yield stack
    finally:
        stack.remove()


def test_prod_preview_passes_the_pack(prod_stack: EngineStack) -> None:
    result = prod_stack.preview()
    assert result.change_summary.get("create", 0) > 50, result.change_summary
    text = "\n".join(prod_stack.events)
    assert "Policies:" in text or "fly-potato" in text, text[-2000:]
    assert "mandatory" not in text.lower(), text[-3000:]


def test_publishing_postgres_publicly_fails_the_preview_naming_r_net_1(prod_stack: EngineStack) -> None:
    prod_stack.overrides["publish.postgres"] = "public"
    prod_stack.write_config()
    with pytest.raises(auto.CommandError) as failure:
        prod_stack.preview()
    text = "\n".join(prod_stack.events) + str(failure.value)
    assert "R-NET-1" in text, text[-3000:]
    assert "mandatory" in text.lower()
