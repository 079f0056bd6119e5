"""R-SEC-2: containers run non-root, unprivileged, with no-new-privileges, all capabilities dropped,
a read-only root filesystem, memory/CPU/process limits, a healthcheck (unless one-shot), a restart
policy, log rotation and no bind mounts.

A Swarm service (``docker.Service``) is held to the same where Swarm has the setting: the task's container spec
runs non-root with a read-only root filesystem, drops ALL capabilities, has a healthcheck (unless one-shot:
restart condition none), and the task has a memory and CPU limit, a restart policy and rotated logs. Swarm's
container spec has no no-new-privileges option and no ulimits in the provider, so those two are not checked there."""

from __future__ import annotations

from pulumi_policy import ResourceValidationArgs

from policy import spec
from policy.props import ContainerView, ServiceView, contains_unknown, is_unknown
from policy.rules._base import Report, ResourceRule, files_container_of, workload_of

ID = "container-hardening"
CHECKED = (
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
    "networkMode",
    "pidMode",
    "ipcMode",
)


def validate_files_container(files: ContainerView, report: Report) -> None:
    """A files container only hands its service's files over: it runs once (attached, never restarted), with
    no network or ports, no-new-privileges, and of all capabilities only CHOWN, which the hand-over needs."""
    p, s = files.props, f"files of {files.files_for}"
    if p.get("mustRun") is not False or p.get("restart") not in ("no", None):
        report(f"{s}: a files container runs once (must_run=false, restart=no)")
    if p.get("networkMode") != "none":
        report(f"{s}: a files container needs no network (network_mode=none)")
    if p.get("ports"):
        report(f"{s}: a files container publishes nothing")
    caps = p.get("capabilities") or {}
    adds = set(caps.get("adds") or [])
    if p.get("privileged") or "ALL" not in (caps.get("drops") or []) or not adds <= {"CHOWN"}:
        report(f"{s}: no privileges and every capability dropped but CHOWN")
    if "no-new-privileges:true" not in (p.get("securityOpts") or []):
        report(f"{s}: set security_opts no-new-privileges:true")


SERVICE_RESTART_CONDITIONS = frozenset({"any", "on-failure"})
# The container spec's fields R-SEC-2 reads (mounts: their types and sources).
SERVICE_HARDENING_FIELDS = ("user", "readOnly", "capDrops", "capAdds", "healthcheck", "mounts", "privileges")


def _mounts(s: str, mounts: list[dict], report: Report, *, where: str = "") -> None:
    for mount in mounts:
        if mount.get("type") != "bind":
            continue
        if mount.get("source") not in spec.HOST_READERS.get(s, frozenset()):
            report(f"{s}: {where}bind-mounts {mount.get('source')} from the host")
        elif mount.get("readOnly") is not True:
            report(f"{s}: {where}mounts the host's {mount.get('source')} writable")


def validate_service(service: ServiceView, report: Report) -> None:
    c, task = service.container_spec, service.task_spec
    s = service.service
    at = f"{s} (docker.Service {service.name}): task_spec"
    # What hardening is made of must be known; the image, environment, configs and secrets may be computed.
    hardening = {key: c.get(key) for key in SERVICE_HARDENING_FIELDS}
    if (
        is_unknown(task.get("containerSpec"))
        or contains_unknown(hardening)
        or contains_unknown(task.get("resources"))
        or contains_unknown(task.get("restartPolicy"))
    ):
        report(f"{at}: container_spec, resources or restart_policy not known at preview; hardening must be known")
        return
    user = str(c.get("user") or "")
    if not user or user.split(":")[0] in ("0", "root"):
        report(f"{at}.container_spec.user is {user or 'unset (the image default)'!r}; set a non-root uid:gid")
    if c.get("readOnly") is not True:
        report(f"{at}.container_spec.read_only is not true; set it and give scratch space as tmpfs mounts")
    if "ALL" not in (c.get("capDrops") or []):
        report(f"{at}.container_spec.cap_drops lacks 'ALL'; drop every capability")
    extra = sorted(set(c.get("capAdds") or []) - spec.ALLOWED_CAPABILITIES)
    if extra:
        report(f"{at}.container_spec.cap_adds adds {', '.join(extra)}; only NET_BIND_SERVICE may be added")
    limits = (task.get("resources") or {}).get("limits") or {}
    if not limits.get("memoryBytes"):
        report(f"{at}.resources.limits.memory_bytes is not set; give the service a memory limit")
    if not limits.get("nanoCpus"):
        report(f"{at}.resources.limits.nano_cpus is not set; give the service a CPU limit")
    restart = task.get("restartPolicy") or {}
    if not service.one_shot:
        health = c.get("healthcheck") or {}
        if not health.get("tests") or health["tests"][0] == "NONE":
            report(f"{at}.container_spec.healthcheck is missing; give the service a healthcheck")
        if restart.get("condition") not in SERVICE_RESTART_CONDITIONS:
            report(
                f"{at}.restart_policy.condition is {restart.get('condition')!r}; use 'any' or 'on-failure' "
                "(or 'none' for a one-shot task)"
            )
    log = task.get("logDriver") or {}
    driver, opts = log.get("name"), log.get("options") or {}
    if driver in (None, "") or (driver in spec.ROTATING_LOG_DRIVERS and not ({"max-size", "max-file"} <= set(opts))):
        report(f"{at}.log_driver: logs are not rotated; use json-file with options max-size and max-file")
    _mounts(s, list(c.get("mounts") or []), report, where="task_spec.container_spec.mounts ")


def validate(args: ResourceValidationArgs, report: Report) -> None:
    files = files_container_of(args)
    if files is not None:
        validate_files_container(files, report)
        return
    container = workload_of(args)
    if container is None:
        return
    if isinstance(container, ServiceView):
        validate_service(container, report)
        return
    p, s = container.props, container.service
    unknown = [key for key in CHECKED if contains_unknown(p.get(key))]
    if unknown:
        report(f"{s}: {', '.join(unknown)} not known at preview; hardening must be known to be checked")
        return
    user = str(p.get("user") or "")
    uid = user.split(":")[0]
    if not user or uid in ("0", "root"):
        report(f"{s}: runs as {user or 'the image default user'}; set a non-root uid:gid")
    if p.get("privileged"):
        report(f"{s}: runs privileged")
    if not any(
        str(o).replace("=", ":") in ("no-new-privileges:true", "no-new-privileges") for o in p.get("securityOpts") or []
    ):
        report(f"{s}: lacks security option no-new-privileges:true")
    caps = p.get("capabilities") or {}
    if "ALL" not in (caps.get("drops") or []):
        report(f"{s}: does not drop ALL capabilities")
    extra = sorted(set(caps.get("adds") or []) - spec.ALLOWED_CAPABILITIES)
    if extra:
        report(f"{s}: adds capabilities {', '.join(extra)}")
    if p.get("readOnly") is not True:
        report(f"{s}: root filesystem is writable; set read_only and give scratch space as tmpfs")
    if not p.get("memory"):
        report(f"{s}: no memory limit")
    if not p.get("cpus") or float(p.get("cpus") or 0) <= 0:
        report(f"{s}: no CPU limit")
    if not any(u.get("name") == "nproc" and u.get("hard") for u in p.get("ulimits") or []):
        report(f"{s}: no process limit (nproc ulimit)")
    one_shot = p.get("restart") == "no" and p.get("mustRun") is False
    if not one_shot:
        health = p.get("healthcheck") or {}
        if not health.get("tests") or health["tests"][0] == "NONE":
            report(f"{s}: no healthcheck")
        if p.get("restart") not in spec.RESTART_POLICIES:
            report(f"{s}: restart policy {p.get('restart')!r}; use unless-stopped")
    driver = p.get("logDriver")
    opts = p.get("logOpts") or {}
    if driver in (None, "") or (driver in spec.ROTATING_LOG_DRIVERS and not ({"max-size", "max-file"} <= set(opts))):
        report(f"{s}: logs are not rotated; use json-file with max-size and max-file")
    _mounts(s, list(p.get("mounts") or []), report)
    for volume in p.get("volumes") or []:
        if volume.get("hostPath"):
            report(f"{s}: bind-mounts {volume.get('hostPath')} from the host")
    for key in ("networkMode", "pidMode", "ipcMode"):
        if p.get(key) == "host":
            report(f"{s}: shares the host's {key.removesuffix('Mode')} namespace")


POLICY = ResourceRule(
    ID,
    "R-SEC-2",
    "containers and Swarm services non-root, unprivileged, no-new-privileges, caps dropped, read-only, "
    "limited, health-checked, restarted, log-rotated",
    validate,
)
