"""The PHI guard: requests built from raw-PHI rows never leave this machine.

The check looks only at the text of ``base_url``; it never resolves a name, because a DNS
answer can change between the check and the connection (and the lookup itself would leave
the machine). A host counts as local when it is a loopback IP literal (127.0.0.0/8, ::1,
IPv4-mapped loopback) or ``localhost`` / ``*.localhost`` (RFC 6761 keeps those on the
machine). Every other name is remote, including anything under the reserved ``.invalid``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Sequence
from urllib.parse import urlsplit

from meddata.llm.errors import PHIGuardError
from meddata.llm.types import SAFE_PHI_STATUSES, ChatRequest

logger = logging.getLogger("meddata.llm")

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def endpoint_host(base_url: str) -> str:
    """The host part of ``base_url`` (lower case, no trailing dot); '' when there is none."""
    try:
        host = urlsplit(base_url).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".").lower()


def is_local_endpoint(base_url: str) -> bool:
    """True when ``base_url`` points at this machine, decided without any network access."""
    host = endpoint_host(base_url)
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host in _LOCAL_NAMES or host.endswith(".localhost")
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def is_safe_status(status: str | None) -> bool:
    """Statuses other than deidentified/not_applicable (raw, missing, unknown) are unsafe."""
    return status in SAFE_PHI_STATUSES


class PHIGuard:
    """Decides, per LLM, whether requests may be sent. Built once per client."""

    def __init__(self, llm_name: str, base_url: str, *, local: bool, allow_phi_to_remote: bool):
        self.llm_name = llm_name
        self.host = endpoint_host(base_url)
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
