"""Reading the order out of a recorded resource graph (``policy_plan.program.ProgramGraph``)."""

from __future__ import annotations

from policy_plan.program import PlannedResource, ProgramGraph


def depends_on(graph: ProgramGraph, resource: PlannedResource) -> set[str]:
    """Explicit and property dependencies, transitively, of the resource and of its ancestors (not of siblings)."""
    by_urn = {r.urn: r for r in graph.resources}
    seen: set[str] = set()
    todo = [resource.urn]
    while todo:
        current = by_urn.get(todo.pop())
        if current is None:
            continue
        nexts = list(current.dependencies) + [u for deps in current.property_dependencies.values() for u in deps]
        chain = current.parent
        while chain in by_urn:  # what a parent waits for, its children wait for
            nexts += list(by_urn[chain].dependencies)
            chain = by_urn[chain].parent
        for urn in nexts:
            if urn not in seen:
                seen.add(urn)
                todo.append(urn)
                todo.extend(r.urn for r in graph.resources if r.parent == urn)
    return seen
