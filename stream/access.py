"""Who may use the server: which pages may drive it (`Origin`), who may create sessions (API keys),
and short-lived signed download links, so that a session's token never has to sit in a URL.

Browsers send `Origin` with every WebSocket handshake and every POST, and CORS does not protect a
WebSocket at all: without this check any page a user visits could open `/ws` on a server the user
can reach and drive it. Requests without `Origin` (scripts, the Python client) are not from a page
and are allowed.

A session's token controls the session (steer, stop, re-attach). A URL carrying it ends up in
browser history, proxy and access logs, so the MP4 export is reached through a link that proves
only "this session's video, until then": an HMAC over the session id and an expiry time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from framepack_live.engine.errors import InputError

#: In `allowed_origins`: pages of any site may use the server.
ANY_ORIGIN = "*"


def normalize_origin(origin: str) -> str:
    """`scheme://host[:port]`, lower case, as browsers send it; ValueError for anything else."""
    if origin == ANY_ORIGIN:
        return origin
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"an allowed origin is scheme://host[:port] (e.g. https://example.com), got {origin!r}")
    return f"{parts.scheme}://{parts.netloc}"


def normalize_proxy(entry: str) -> str:
    """An address or a CIDR network, written the canonical way; ValueError otherwise (a typo must
    not silently trust nobody, or somebody else)."""
    try:
        return str(ipaddress.ip_network(entry, strict=False) if "/" in entry else ipaddress.ip_address(entry))
    except ValueError:
        raise ValueError(f"a trusted proxy is an IP address or a CIDR network (10.0.0.0/8), got {entry!r}") from None


def key_digest(key: str) -> bytes:
    """What the server keeps of an API key. A plain SHA-256 is enough for keys that are random
    strings (not passwords people chose), and keeps the keys themselves out of memory dumps."""
    return hashlib.sha256(key.encode()).digest()


def read_api_keys(path: str | Path) -> frozenset[bytes]:
    """The digests of the keys in `path`: one key per line; blank lines and `#` comments skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read the API key file {path}: {exc.strerror}") from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise ValueError(f"the API key file {path} holds no key (one key per line)")
    return frozenset(key_digest(key) for key in keys)


@dataclass(frozen=True)
class Access:
    """Who may use the server. The defaults: pages of the server's own origin only, every address
    is its own client, no API keys, a random key for download links made with these settings."""

    #: Origins (`scheme://host[:port]`) whose pages may use the server besides its own; `*`: any.
    allowed_origins: tuple[str, ...] = ()
    #: Addresses or CIDR networks of reverse proxies and load balancers in front of the server.
    #: A request whose TCP peer is one of them counts as coming from the client that the
    #: `X-Forwarded-For` header names (the rightmost hop that is not a trusted proxy); any other
    #: peer's header is ignored. Empty: every request is its TCP peer's.
    trusted_proxies: tuple[str, ...] = ()
    #: SHA-256 digests of the API keys that may create sessions; empty: no key needed.
    api_key_digests: frozenset[bytes] = field(default=frozenset(), repr=False)
    #: Key of the download links' HMAC. Every server process that serves the same sessions must
    #: have the same one (the cluster's Ingress replicas get these settings from one place).
    link_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    #: How long a download link works after it was made. It is used at once by the page; the
    #: download itself may take longer (only its start is checked).
    link_lifetime_s: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_origins", tuple(normalize_origin(o) for o in self.allowed_origins))
        object.__setattr__(self, "trusted_proxies", tuple(normalize_proxy(p) for p in self.trusted_proxies))
        if len(self.link_key) < 16:
            raise ValueError("link_key must be at least 16 bytes")
        if self.link_lifetime_s <= 0:
            raise ValueError(f"link_lifetime_s must be positive, got {self.link_lifetime_s}")

    @property
    def api_key_required(self) -> bool:
        return bool(self.api_key_digests)

    def check_origin(self, headers: Mapping[str, str]) -> None:
        """`unauthorized` for a page of a site that may not use the server.

        The server's own origin is the one whose host is the request's `Host`: a reverse proxy
        must pass `Host` on, or its public origin be listed in `allowed_origins`.
        """
        origin = headers.get("origin")
        if origin is None or ANY_ORIGIN in self.allowed_origins:
            return
        host = headers.get("host", "")
        normalized = origin.strip().lower()
        if normalized in self.allowed_origins or (host and urlsplit(normalized).netloc == host.lower()):
            return
        raise InputError("unauthorized", f"pages of {origin} may not use this server")

    def check_api_key(self, key: str | None) -> None:
        """`unauthorized` unless `key` is one of the operator's (when keys are required).

        Every stored digest is compared, in constant time, so neither whether a key matched nor
        which one did shows in the time taken."""
        if not self.api_key_digests:
            return
        if not key:
            raise InputError("unauthorized", "this server needs an API key to start a session (`api_key` in `start`)")
        offered = key_digest(key)
        matched = False
        for digest in self.api_key_digests:
            matched |= hmac.compare_digest(digest, offered)
        if not matched:
            raise InputError("unauthorized", "this API key is not valid here")

    def download_link(self, session_id: str, now: float | None = None) -> tuple[str, int]:
        """The path of a signed link to `session_id`'s MP4, and when it expires (Unix seconds)."""
        expires = math.ceil((time.time() if now is None else now) + self.link_lifetime_s)
        signature = self._signature(session_id, str(expires))
        return f"/sessions/{session_id}/video.mp4?expires={expires}&signature={signature}", expires

    def check_download_link(self, session_id: str, expires: str, signature: str, now: float | None = None) -> None:
        """`unauthorized` unless the link was signed with this key for this session and has not expired."""
        if not hmac.compare_digest(self._signature(session_id, expires).encode(), signature.encode()):
            raise InputError(
                "unauthorized", "not a valid download link: ask for one with POST /sessions/{id}/download"
            )
        if int(expires) < (time.time() if now is None else now):
            raise InputError("unauthorized", "this download link has expired: ask for a new one")

    def _signature(self, session_id: str, expires: str) -> str:
        mac = hmac.new(self.link_key, f"download\n{session_id}\n{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
