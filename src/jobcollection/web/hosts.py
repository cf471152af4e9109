"""Which `Host` a dashboard answers, as pure functions of the header and the configured names.

A page of another site whose name its owner rebinds to 127.0.0.1 (DNS rebinding) reaches a
server on loopback with that site's name in `Host`; the browser counts it as the site's own
origin, so the page may read what the server answers. Answering only the names the server is
meant to be reached by keeps such pages out (as Jupyter and Django's ALLOWED_HOSTS do).

Loopback names are always served: `localhost` and loopback addresses written as addresses
(`127.0.0.1`, `[::1]`, any port); no one can rebind them. Other names are served when
`allowed_hosts` lists them: `jobs.example.com` exactly, or `.example.com` for that domain and
its subdomains. Names compare case-insensitively and without one final dot (`localhost.` is
`localhost`, as in DNS); addresses compare as addresses (`[0:0::1]` is `[::1]`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..model.errors import InvalidArgument, InvalidArgumentType

_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
"""A host name, lowercased and without its final dot: labels of letters, digits, `-`, `_`."""
_PORT = re.compile(r"[0-9]{0,5}")


@dataclass(frozen=True, slots=True)
class Host:
    """A Host header's host: `name` lowercased, without its final dot, an IPv6 address
    without brackets and in its short form; `port` None when not given."""

    name: str
    port: int | None = None

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The address the host is, when it is one (not a name)."""
        try:
            return ipaddress.ip_address(self.name)
        except ValueError:
            return None

    def is_loopback(self) -> bool:
        """`localhost` or a loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104)."""
        if self.name == "localhost":
            return True
        address = self.address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address is not None and address.is_loopback


def _name(text: str) -> str | None:
    """A host name or IPv4 address, normalised; None when it is neither."""
    name = text.lower()
    if name.endswith("."):
        name = name[:-1]
    if not _NAME.fullmatch(name):
        return None
    return name


def parse_host(header: str) -> Host | None:
    """The host of a `Host` header value, or None when it is not a host a browser sends:
    empty, with userinfo (`user@host`), a path, a percent sign or other characters no host
    name has, two final dots, a bad port, an IPv6 address without brackets or a zone."""
    if header.startswith("["):
        inside, bracket, rest = header[1:].partition("]")
        try:
            address = ipaddress.IPv6Address(inside) if bracket and "%" not in inside else None
        except ValueError:
            address = None
        if address is None:
            return None
        name = address.compressed
    else:
        text, colon, port_text = header.partition(":")
        found = _name(text)
        if found is None:
            return None
        name = found
        rest = colon + port_text
    if not rest:
        return Host(name)
    if not rest.startswith(":") or not _PORT.fullmatch(rest[1:]):
        return None
    if rest == ":":  # an empty port: the scheme's default
        return Host(name)
    port = int(rest[1:])
    return Host(name, port) if port <= 65_535 else None


def allowed_hosts_from(entries: Iterable[str]) -> tuple[str, ...]:
    """The `allowed_hosts` option, checked and normalised: host names (`jobs.example.com`),
    `.example.com` for a domain and its subdomains, or addresses (`192.0.2.7`, `::1` or
    `[::1]`); no ports, schemes, paths or wildcards."""
    if isinstance(entries, str | bytes) or not isinstance(entries, Iterable):
        raise InvalidArgumentType("allowed_hosts", "must be a list of host names")
    out: list[str] = []
    for i, entry in enumerate(entries):
        name = f"allowed_hosts[{i}]"
        if not isinstance(entry, str):
            raise InvalidArgumentType(name, "must be a host name (a string)")
        text = entry.strip().lower()
        domain = text.startswith(".")
        if domain:
            text = text[1:]
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
            address = ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
        except ValueError:
            address = None
        if address is not None and not domain:
            out.append(address.compressed)
            continue
        found = None if text.startswith("[") else _name(text)
        if found is None:
            raise InvalidArgument(
                name,
                f"{entry!r} is not a host name (`jobs.example.com`, `.example.com` for a "
                "domain and its subdomains) or an address; no port, scheme, path or wildcard",
            )
        out.append("." + found if domain else found)
    return tuple(dict.fromkeys(out))


def is_allowed(host: Host, allowed: tuple[str, ...]) -> bool:
    """Whether a dashboard that serves these allowed hosts (normalised by
    allowed_hosts_from) answers a request for `host`: a loopback name, or a listed one."""
    if host.is_loopback():
        return True
    for entry in allowed:
        if entry.startswith("."):
            if host.name == entry[1:] or host.name.endswith(entry):
                return True
        elif host.name == entry:
            return True
    return False
