"""Helpers of the policy tests: the real program under mocks, mutated, checked by the pack."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from datetime import date
from functools import lru_cache
from typing import Any

from policy import context
from policy_plan import crossguard
from policy_plan.program import SECRET_SIG, PlannedResource, ProgramGraph, evaluate_program

# The committed stacks record their last rotation on 2026-11-21; checks run "ten days later".
TODAY = date(2026, 12, 1)


@lru_cache(maxsize=64)
def _evaluate(stack: str, overrides: str, preview: bool) -> ProgramGraph:
    return evaluate_program(stack, json.loads(overrides), preview=preview)


def evaluate(stack: str, overrides: Mapping[str, Any] | None = None, *, preview: bool = False) -> ProgramGraph:
    """The program for ``stack`` with config ``overrides`` (a private copy: tests may mutate it)."""
    graph = _evaluate(stack, json.dumps(dict(overrides or {}), sort_keys=True), preview)
    assert graph.error is None, graph.error
    return copy.deepcopy(graph)


def check(
    graph: ProgramGraph, *, policy_config: dict[str, Any] | None = None, today: date = TODAY
) -> crossguard.Result:
    ctx = context.make(graph.stack, graph.config, today=today)
    return crossguard.run(graph, ctx, policy_config=policy_config)


def found(result: crossguard.Result, policy: str) -> set[tuple[str, str, str]]:
    """(policy, resource, level) of every violation of ``policy``."""
    return {(v.policy, v.resource, v.level) for v in result.violations if v.policy == policy}


def container(graph: ProgramGraph, service: str) -> PlannedResource:
    """The recorded service container itself (mutations reach the graph the policies read)."""
    merged = graph.containers()[service]
    return graph.by_urn(merged.urn)


def edit_inputs(resource: PlannedResource, key: str, change: Callable[[Any], Any]) -> None:
    """Replace ``resource.inputs[key]`` by ``change(value)``, keeping a secret wrapper if there is one."""
    value = resource.inputs.get(key)
    if isinstance(value, dict) and value.get(SECRET_SIG):
        value["value"] = change(value["value"])
    else:
        resource.inputs[key] = change(value)


def edit_upload(graph: ProgramGraph, service: str, path: str, change: Callable[[str], Any]) -> None:
    def apply(uploads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        hits = [u for u in uploads if u["file"] == path]
        assert hits, f"{service} receives no {path}"
        for upload in hits:
            upload["content"] = change(upload["content"])
        return uploads

    # The files reach the service through its files container.
    edit_inputs(graph.files_containers()[service], "uploads", apply)


def replace_in(old: str, new: str) -> Callable[[str], str]:
    def change(text: str) -> str:
        assert old in text, f"{old!r} not in the rendered file"
        return text.replace(old, new)

    return change


NGINX_CONF = "/etc/fly-potato/nginx.conf"
