"""The nginx configuration a container or a Swarm service receives, parsed with crossplane (a real nginx config
parser).

The rendered files travel as container ``uploads`` on a host and as Swarm configs on a swarm; both reach the rules
through the view's ``uploads()`` (path -> content). The main file is the one named by ``nginx -c``. ``include``
directives are resolved against the other files received; includes of files that ship in the image
(``mime.types``) are left as they are.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import crossplane

from policy.props import ContainerView, flag_value, is_unknown

DEFAULT_CONF = "/etc/nginx/nginx.conf"

Stmt = dict[str, Any]


@dataclass
class Listen:
    address: str
    port: int | None
    ssl: bool
    args: list[str]


@dataclass
class Block:
    """A server or location with the chain of enclosing blocks (outermost first) for inheritance."""

    kind: str
    args: list[str]
    chain: list[list[Stmt]]  # statements of each enclosing level, ending with this block's own

    @property
    def stmts(self) -> list[Stmt]:
        return self.chain[-1]

    def own(self, directive: str) -> list[Stmt]:
        return [s for s in self.stmts if s["directive"] == directive]

    def effective(self, directive: str) -> list[Stmt]:
        """The statements that apply here: nginx's array-directive inheritance (innermost level that
        defines the directive wins, the outer levels are then ignored) -- true for ssl_*, add_header,
        allow/deny."""
        for level in reversed(self.chain):
            found = [s for s in level if s["directive"] == directive]
            if found:
                return found
        return []

    def effective_many(self, *directives: str) -> list[Stmt]:
        """Like effective() for a group inherited together (allow/deny)."""
        for level in reversed(self.chain):
            found = [s for s in level if s["directive"] in directives]
            if found:
                return found
        return []

    def listens(self) -> list[Listen]:
        result = []
        for stmt in self.own("listen"):
            args = stmt["args"]
            address = args[0] if args else ""
            port: int | None = None
            tail = address.rsplit(":", 1)[-1] if not address.startswith("unix:") else ""
            if tail.isdigit():
                port = int(tail)
            elif address and not address.startswith("unix:"):
                port = 80  # a bare address listens on 80
            result.append(Listen(address=address, port=port, ssl="ssl" in args[1:], args=list(args)))
        return result

    @property
    def is_tls(self) -> bool:
        return any(item.ssl for item in self.listens())

    def locations(self) -> Iterator[Block]:
        yield from _locations(self)


def _locations(block: Block) -> Iterator[Block]:
    for stmt in block.stmts:
        if stmt["directive"] == "location":
            child = Block("location", stmt["args"], [*block.chain, stmt.get("block", [])])
            yield child
            yield from _locations(child)


@dataclass
class NginxConfig:
    statements: list[Stmt]
    errors: list[str] = field(default_factory=list)
    unresolved_includes: list[str] = field(default_factory=list)

    def _servers(self, context: str) -> list[Block]:
        servers = []
        for top in self.statements:
            if top["directive"] != context:
                continue
            outer = top.get("block", [])
            for stmt in outer:
                if stmt["directive"] == "server":
                    servers.append(Block("server", stmt["args"], [outer, stmt.get("block", [])]))
        return servers

    def http_servers(self) -> list[Block]:
        return self._servers("http")

    def stream_servers(self) -> list[Block]:
        return self._servers("stream")


class ConfigUnavailableError(Exception):
    """The main config file is missing from the files received or not known (preview)."""


def main_path(container: ContainerView) -> str:
    """The file nginx reads: ``-c PATH`` in the command, else in the process' arguments (a Swarm service's
    ``commands`` when it has no ``args``), else the image default."""
    for args in (container.command(), container.argv()):
        value = flag_value(args, "-c")
        if isinstance(value, str):
            return value
    return DEFAULT_CONF


def load(container: ContainerView) -> NginxConfig:
    files = container.uploads()
    path = main_path(container)
    if path not in files:
        raise ConfigUnavailableError(f"{path} is not among the files the nginx container receives")
    # Several rules read the same config: parse it once per content.
    key = (path, tuple(sorted((p, c) for p, c in files.items() if isinstance(c, str))))
    cached = _CACHE.get(key)
    if cached is None:
        cached = parse_files(files, path)
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = cached
    return cached


_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], NginxConfig] = {}


def parse_files(files: Mapping[str, Any], main: str) -> NginxConfig:
    """Parse ``main`` and the files received it includes. Raises ConfigUnavailableError when one of them
    is not known (preview); other files (keys, certificates) may stay unknown."""
    errors: list[str] = []
    unresolved: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nginx-policy-") as scratch:

        def parse_one(path: str, seen: tuple[str, ...]) -> list[Stmt]:
            content = files[path]
            if is_unknown(content) or not isinstance(content, str):
                raise ConfigUnavailableError(
                    f"{path} is not known at preview; render the nginx config from settings, not in apply()"
                )
            local = os.path.join(scratch, f"{len(seen)}-{os.path.basename(path) or 'conf'}")
            with open(local, "w", encoding="utf-8") as handle:
                handle.write(content)
            payload = crossplane.parse(local, single=True, catch_errors=True, comments=False, strict=False)
            for error in payload.get("errors", []):
                errors.append(f"{path}:{error.get('line')}: {str(error.get('error', '')).replace(local, path)}")
            parsed = payload["config"][0]["parsed"] if payload.get("config") else []
            return splice(parsed, os.path.dirname(path), (*seen, path))

        def splice(stmts: list[Stmt], base: str, seen: tuple[str, ...]) -> list[Stmt]:
            result: list[Stmt] = []
            for stmt in stmts:
                if stmt["directive"] == "include" and stmt["args"]:
                    target = stmt["args"][0]
                    target = target if target.startswith("/") else os.path.normpath(os.path.join(base, target))
                    if target in files and target not in seen:
                        result.extend(parse_one(target, seen))
                        continue
                    unresolved.append(target)
                if "block" in stmt:
                    stmt = {**stmt, "block": splice(stmt["block"], base, seen)}
                result.append(stmt)
            return result

        statements = parse_one(main, ())
    return NginxConfig(statements=statements, errors=errors, unresolved_includes=unresolved)


def upstream_of(location: Block) -> str | None:
    """The proxy_pass target of a location; a leading variable is resolved from ``set`` in the
    enclosing blocks or from a ``map`` with one value. A map with several values yields them joined by
    ``|`` so that every possible target is checked."""
    passes = location.own("proxy_pass")
    if not passes or not passes[0]["args"]:
        return None
    target = str(passes[0]["args"][0])
    match = _VARIABLE.match(target)
    if not match:
        return target
    name, rest = match.group(0), target[match.end() :]
    for level in reversed(location.chain):
        for stmt in level:
            if stmt["directive"] == "set" and len(stmt["args"]) == 2 and stmt["args"][0] == name:
                return str(stmt["args"][1]) + rest
            if stmt["directive"] == "map" and len(stmt["args"]) == 2 and stmt["args"][1] == name:
                values = sorted({str(entry["args"][-1]) for entry in stmt.get("block", []) if entry["args"]})
                return "|".join(value + rest for value in values)
    return target


_VARIABLE = re.compile(r"^\$[A-Za-z_][A-Za-z0-9_]*")


def host_of(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0]
