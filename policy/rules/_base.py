"""Shared pieces of the rules: policy constructors that carry the R-… id, and a stack view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy.props import (
    CONTAINER,
    NETWORK,
    SERVICE,
    SERVICE_CONFIG,
    UNKNOWN,
    ContainerView,
    ServiceView,
    config_content,
    labels_of,
    plain,
)
from wire import ZONE_LABEL

# pulumi-policy types the callback with a required urn argument; it is optional at run time.
Report = Callable[..., None]


class ResourceRule(ResourceValidationPolicy):
    """A resource policy with the requirement it enforces (``requirement``) in its description."""

    def __init__(
        self,
        name: str,
        requirement: str,
        title: str,
        validate: Callable[[ResourceValidationArgs, Report], None],
        enforcement_level: EnforcementLevel | None = None,
    ) -> None:
        super().__init__(name, f"{requirement}: {title}", validate, enforcement_level)
        self.requirement = requirement
        self.title = title


class StackRule(StackValidationPolicy):
    """A stack policy with the requirement it enforces (``requirement``) in its description."""

    def __init__(
        self,
        name: str,
        requirement: str,
        title: str,
        validate: Callable[[StackValidationArgs, Report], None],
        enforcement_level: EnforcementLevel | None = None,
    ) -> None:
        super().__init__(name, f"{requirement}: {title}", validate, enforcement_level)
        self.requirement = requirement
        self.title = title


def container_of(args: ResourceValidationArgs) -> ContainerView | None:
    """The service container this resource is, or None (other types, and files containers)."""
    if args.resource_type != CONTAINER:
        return None
    view = ContainerView(name=args.name, urn=args.urn, props=plain(args.props))
    return None if view.files_for else view


def workload_of(args: ResourceValidationArgs) -> ContainerView | None:
    """The service container or Swarm service (a :class:`ServiceView`) this resource is, or None."""
    if args.resource_type == SERVICE:
        return ServiceView(name=args.name, urn=args.urn, props=plain(args.props))
    return container_of(args)


def files_container_of(args: ResourceValidationArgs) -> ContainerView | None:
    """The never-started container that delivers a service's files, or None."""
    if args.resource_type != CONTAINER:
        return None
    view = ContainerView(name=args.name, urn=args.urn, props=plain(args.props))
    return view if view.files_for else None


@dataclass
class StackResource:
    urn: str
    type: str
    name: str
    props: dict[str, Any]
    parent: str | None
    property_dependencies: dict[str, list[StackResource]] = field(default_factory=dict)
    dependencies: list[StackResource] = field(default_factory=list)


@dataclass
class StackView:
    resources: list[StackResource]

    @classmethod
    def of(cls, args: StackValidationArgs) -> StackView:
        views: dict[int, StackResource] = {}
        for r in args.resources:
            parent = r.parent.urn if r.parent is not None else None
            views[id(r)] = StackResource(r.urn, r.resource_type, r.name, plain(r.props), parent)
        for r in args.resources:
            views[id(r)].property_dependencies = {
                key: [views[id(dep)] for dep in deps if id(dep) in views]
                for key, deps in (r.property_dependencies or {}).items()
            }
            views[id(r)].dependencies = [views[id(dep)] for dep in r.dependencies or [] if id(dep) in views]
        return cls(list(views.values()))

    def of_type(self, type_: str) -> list[StackResource]:
        return [r for r in self.resources if r.type == type_]

    def containers(self) -> list[ContainerView]:
        """Service containers, each with the files it receives (uploaded through its files container)."""
        views = [ContainerView(r.name, r.urn, r.props) for r in self.of_type(CONTAINER)]
        files = {v.files_for: v for v in views if v.files_for}
        services = []
        for view in views:
            if view.files_for:
                continue
            loader = files.get(view.service)
            if loader is not None and "uploads" in loader.props:
                view = ContainerView(view.name, view.urn, {**view.props, "uploads": loader.props["uploads"]})
            services.append(view)
        return services

    def services(self) -> list[ServiceView]:
        """Swarm services (``target: swarm``), each with the files it receives (its Swarm configs and secrets)."""
        services = []
        for resource in self.of_type(SERVICE):
            view = ServiceView(resource.name, resource.urn, resource.props)
            view.files = self.service_files(resource, view)
            services.append(view)
        return services

    def service_files(self, resource: StackResource, service: ServiceView) -> dict[str, Any]:
        """Task path -> content of the files a Swarm service receives. Each config of ``containerSpec.configs`` is
        the stack's ``docker.ServiceConfig`` of that name, its base64 ``data`` decoded. Where the name does not
        tell (not known at preview, or no config of the stack has it), the ServiceConfig the service depends on
        stands for it when that leaves no doubt (one such reference, one such dependency left); else its content is
        UNKNOWN, as it is when the config's data is not known at preview. Secrets are UNKNOWN: never read."""
        by_name = {c.props.get("name"): c for c in self.of_type(SERVICE_CONFIG) if isinstance(c.props.get("name"), str)}
        files: dict[str, Any] = {}
        pending: list[tuple[str, Any]] = []  # (path, the name referenced)
        used: set[str] = set()
        for ref in service.config_refs():
            path = ref.get("fileName")
            if not isinstance(path, str):
                continue  # not known at preview: no rule can ask for it
            config = by_name.get(ref.get("configName"))
            if config is None:
                pending.append((path, ref.get("configName")))
            else:
                files[path] = config_content(config.props.get("data"))
                used.add(config.urn)
        depends_on = [*resource.property_dependencies.get("taskSpec", []), *resource.dependencies]
        left = {d.urn: d for d in depends_on if d.type == SERVICE_CONFIG and d.urn not in used}.values()
        for path, name in pending:
            # A config named otherwise (both names known) is another config.
            candidates = [d for d in left if not (isinstance(name, str) and isinstance(d.props.get("name"), str))]
            only = len(pending) == 1 and len(candidates) == 1
            files[path] = config_content(candidates[0].props.get("data")) if only else UNKNOWN
        for ref in service.secret_refs():
            if isinstance(ref.get("fileName"), str):
                files[ref["fileName"]] = UNKNOWN
        return files

    def workloads(self) -> list[ContainerView]:
        """Service containers and Swarm services: what runs a service's process, on one host or on a swarm."""
        return [*self.containers(), *self.services()]

    def container(self, service: str) -> ContainerView | None:
        return next((c for c in self.containers() if c.service == service), None)

    def workload(self, service: str) -> ContainerView | None:
        """The container or the Swarm service (with the files it receives) that runs ``service``, or None."""
        return next((w for w in self.workloads() if w.service == service), None)

    def files_container(self, service: str) -> ContainerView | None:
        """The never-started container that delivers ``service``'s files."""
        views = (ContainerView(r.name, r.urn, r.props) for r in self.of_type(CONTAINER))
        return next((v for v in views if v.files_for == service), None)

    def resource(self, urn: str) -> StackResource | None:
        return next((r for r in self.resources if r.urn == urn), None)

    def zone_of_network(self) -> dict[Any, str]:
        """Docker network name -> zone, from the networks' zone labels."""
        zones: dict[Any, str] = {}
        for network in self.of_type(NETWORK):
            zone = labels_of(network.props).get(ZONE_LABEL)
            if isinstance(zone, str):
                zones[network.props.get("name")] = zone
        return zones


def for_service(
    service: str, check: Callable[[ContainerView, Report], None]
) -> Callable[[StackValidationArgs, Report], None]:
    """A stack-policy validate that runs ``check`` on one service's container or Swarm service, with the files it
    receives (other resources: a container's files container, a service's Swarm configs), reporting against its
    URN."""

    def validate(args: StackValidationArgs, report: Report) -> None:
        for workload in StackView.of(args).workloads():
            if workload.service == service:
                check(workload, lambda message, *_, urn=workload.urn: report(message, urn))

    return validate


def for_each_workload(check: Callable[[ContainerView, Report], None]) -> Callable[[StackValidationArgs, Report], None]:
    """A stack-policy validate that runs ``check`` on every service container, with the files it receives, and on
    every Swarm service (a :class:`ServiceView`)."""

    def validate(args: StackValidationArgs, report: Report) -> None:
        for container in StackView.of(args).workloads():
            check(container, lambda message, *_, urn=container.urn: report(message, urn))

    return validate
