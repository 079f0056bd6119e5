"""Field types of the stack settings, each with its own one-sentence error."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
)
from pydantic_core import PydanticCustomError

from components.catalog import (
    LISTENERS,
    SERVICES,
)


def _tcp_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise PydanticCustomError("tcp_port", "is not a TCP port (1-65535)")
    return value


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise PydanticCustomError(
            "ip_address", "is not an IP address; use a literal address such as 127.0.0.1 or 0.0.0.0"
        ) from None


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise PydanticCustomError(
            "cidr", "is not a CIDR block; write it like 203.0.113.0/24 or 198.51.100.7/32"
        ) from None


_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


def _domain(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise PydanticCustomError(
            "domain", "is not a DNS name; use the bare host name users type, e.g. flypotato.example.com"
        )
    return value


MAX_MEMORY_MB = 256 * 1024
_SIZE = re.compile(r"^(\d+)\s*([kmg]?)i?b?$", re.IGNORECASE)


def _memory_mb(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        mb = value
    else:
        match = _SIZE.match(str(value).strip())
        if not match:
            raise PydanticCustomError("memory", "is not a memory size; write it like 512m or 4g")
        number, unit = int(match.group(1)), match.group(2).lower()
        mb = {"k": number // 1024, "m": number, "g": number * 1024, "": number // (1024 * 1024)}[unit]
    if mb < 16:
        raise PydanticCustomError("memory", "is below 16 MiB; no service of the platform starts in less")
    if mb > MAX_MEMORY_MB:
        raise PydanticCustomError(
            "memory", "is above 256 GiB, which limits nothing; give the service its real size, e.g. 4g (R-SEC-2)"
        )
    return mb


def _cpus(value: float) -> float:
    if not 0.05 <= value <= 64:
        raise PydanticCustomError("cpus", "is not a CPU share between 0.05 and 64")
    return value


def _pids(value: int) -> int:
    if not 16 <= value <= 65536:
        raise PydanticCustomError("pids", "is not a PID limit between 16 and 65536")
    return value


def _origin(value: str) -> str:
    match = re.match(r"^https?://([a-z0-9.-]+)(?::(\d{1,5}))?$", value)
    if not match or not _HOSTNAME.match(match.group(1)) or (match.group(2) and not 1 <= int(match.group(2)) <= 65535):
        raise PydanticCustomError(
            "origin", "is not a web origin; write scheme://host[:port] with no path, e.g. https://datalens.yandex.ru"
        )
    return value


Port = Annotated[int, AfterValidator(_tcp_port)]
IPAddress = Annotated[str, AfterValidator(_ip_address)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Domain = Annotated[str, AfterValidator(_domain)]
MemoryMB = Annotated[Any, AfterValidator(_memory_mb)]
Cpus = Annotated[float, AfterValidator(_cpus)]
Pids = Annotated[int, AfterValidator(_pids)]
Origin = Annotated[str, AfterValidator(_origin)]


class _Strict(BaseModel):
    # Attribute docstrings become field descriptions, which the generated config reference shows.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _listener_fields(kind: Any) -> dict[str, Any]:
    return {name: (kind | None, None) for name in LISTENERS}


def _service_fields(kind: Any) -> dict[str, Any]:
    return {name: (kind | None, None) for name in SERVICES}
