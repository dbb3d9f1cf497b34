"""The PHI guard: requests built from raw-PHI rows never leave this machine.

The guard judges the address a request will really reach, not only the text of ``base_url``:

* A host is local when it is a loopback IP literal (127.0.0.0/8, ::1, IPv4-mapped loopback),
  or a ``localhost`` name (``localhost``, ``*.localhost``, ...) that resolves to loopback
  addresses only. RFC 6761 asks resolvers to keep ``*.localhost`` on the machine, but not all
  do, so the name alone proves nothing. Every other name is remote without a lookup
  (including anything under the reserved ``.invalid``).
* Connections to a local endpoint never go through a proxy: the OpenAI backend builds its
  HTTP client with environment proxies off for them (:func:`route_for`). For a remote
  endpoint the proxy named by ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` (unless
  ``NO_PROXY`` exempts the host) is where the bytes go first, so the refusal names it too.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from meddata.llm.errors import PHIGuardError
from meddata.llm.types import SAFE_PHI_STATUSES, ChatRequest

logger = logging.getLogger("meddata.llm")

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

#: Resolves a host name to its IP addresses (strings); raises OSError when it cannot.
Resolver = Callable[[str], list[str]]


def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to on this machine (the system resolver)."""
    return [info[4][0] for info in socket.getaddrinfo(host, None)]


def endpoint_host(base_url: str) -> str:
    """The host part of ``base_url`` (lower case, no trailing dot); '' when there is none."""
    try:
        host = urlsplit(base_url).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".").lower()


def _is_loopback_ip(text: str) -> bool | None:
    """True/False for an IP literal (``%zone`` suffix ignored), None when ``text`` is not one."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def is_local_host(host: str, *, resolve: Resolver = resolve_host) -> bool:
    """True when connecting to ``host`` stays on this machine (see the module docstring)."""
    if not host:
        return False
    literal = _is_loopback_ip(host)
    if literal is not None:
        return literal
    if host not in _LOCAL_NAMES and not host.endswith(".localhost"):
        return False
    try:
        addresses = resolve(host)
    except (OSError, UnicodeError):
        return False
    return bool(addresses) and all(_is_loopback_ip(a) for a in addresses)


def is_local_endpoint(base_url: str, *, resolve: Resolver = resolve_host) -> bool:
    """True when ``base_url``'s host is on this machine (a proxy is never used for such a host)."""
    return is_local_host(endpoint_host(base_url), resolve=resolve)


def environment_proxy(base_url: str) -> str | None:
    """The proxy URL the environment names for ``base_url`` (``<scheme>_proxy`` or ``all_proxy``,
    upper or lower case), or None when there is none or ``NO_PROXY`` exempts the host."""
    parts = urlsplit(base_url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme.lower()) or proxies.get("all")
    if not proxy:
        return None
    if "no" in proxies and urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxy


@dataclass(frozen=True)
class Route:
    """Where requests to one endpoint go: its host and the proxy in between (None: direct)."""

    host: str
    proxy: str | None
    local: bool


def route_for(base_url: str, *, resolve: Resolver = resolve_host) -> Route:
    """The route to ``base_url``: a local endpoint is always reached directly (the backend turns
    environment proxies off for it); a remote one through the environment's proxy, if any.
    ``local`` is True only when every hop is on this machine."""
    host = endpoint_host(base_url)
    if is_local_host(host, resolve=resolve):
        return Route(host, None, True)
    return Route(host, environment_proxy(base_url), False)


def is_safe_status(status: str | None) -> bool:
    """Statuses other than deidentified/not_applicable (raw, missing, unknown) are unsafe."""
    return status in SAFE_PHI_STATUSES


class PHIGuard:
    """Decides, per LLM, whether requests may be sent. Built once per client."""

    def __init__(self, llm_name: str, base_url: str, *, local: bool, allow_phi_to_remote: bool,
                 proxy: str | None = None):
        self.llm_name = llm_name
        self.host = endpoint_host(base_url)
        if proxy:  # the first hop is the proxy: name both, and never call the route local
            self.host = f"{self.host or '?'} (through the proxy {endpoint_host(proxy) or proxy})"
            local = local and is_local_endpoint(proxy)
        self.local = local
        self.allow_override = allow_phi_to_remote
        self._warned = False

    def check(self, requests: Sequence[ChatRequest]) -> None:
        """Raise :class:`PHIGuardError` if any request carries raw PHI to a remote endpoint.

        Runs synchronously before the client schedules anything, so no socket is opened for
        a refused batch (not even for the requests in it that were safe).
        """
        if self.local:
            return
        unsafe = Counter(str(r.phi_status) for r in requests if not is_safe_status(r.phi_status))
        if not unsafe:
            return
        statuses = ", ".join(f"{n} with phi_status={s!r}" for s, n in sorted(unsafe.items()))
        if self.allow_override:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "!!! PHI GUARD OVERRIDDEN: llms.%s has allow_phi_to_remote: true; sending requests "
                    "built from rows that are NOT de-identified (%s) to the remote host %s. Make sure "
                    "your data-use agreement allows this. !!!", self.llm_name, statuses, self.host or "?",
                )
            return
        raise PHIGuardError(
            f"PHI guard: LLM {self.llm_name!r} would send {sum(unsafe.values())} request(s) built from "
            f"rows that are not de-identified ({statuses}) to {self.host or 'an endpoint'}, which is not "
            "on this machine; nothing was sent. De-identify first: add the 'deid' step before this step "
            "in the recipe's steps (rows then carry phi_status 'deidentified'), or point the LLM at a "
            "server on this machine (base_url on 127.0.0.1 or localhost). Only if your data-use "
            f"agreement allows it, set allow_phi_to_remote: true under llms.{self.llm_name}."
        )
