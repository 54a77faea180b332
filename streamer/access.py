"""Who may talk to the daemon: the exposure check at start, and the Host, Origin and token checks on
every request.

- Off loopback the daemon does not start without a token of at least MIN_TOKEN_CHARS characters
  (a one-letter token is guessed in a few requests).
- `Host` must be a name the daemon is reachable by: the loopback names, the bind address (for a
  wildcard bind, this machine's names and addresses), and `server.allowed_hosts`. A page on another
  site that points its own DNS name at 127.0.0.1 (DNS rebinding) sends its own name as Host and is
  refused before it reads anything.
- A browser's `Origin` must be this server itself: same scheme (http), host and port as the request.
  `Origin: null` (sandboxed frames, file:// pages, some redirects) is refused: it can be anyone.
- With a token set, the feed, the microphone and the API need `?token=`, compared in constant time.
  The dashboard's static files stay public so the page can load and carry its own `?token=`.
"""
from __future__ import annotations

import hmac
import ipaddress
import socket
from urllib.parse import urlsplit

from core.errors import UserError
from streamer.config import ServerConfig

MIN_TOKEN_CHARS = 16
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def check_exposure(config: ServerConfig) -> None:
    """Refuse to serve a session to the network without a token worth the name."""
    if is_loopback(config.host):
        return
    if not config.token:
        raise UserError(
            f"server.host is {config.host!r}, which other machines can reach, and server.token is empty; "
            f"set server.token (at least {MIN_TOKEN_CHARS} characters) in the config file (clients then add "
            "?token=...), or use --host 127.0.0.1"
        )
    if len(config.token) < MIN_TOKEN_CHARS:
        raise UserError(
            f"server.token has {len(config.token)} characters; off loopback it needs at least {MIN_TOKEN_CHARS} "
            "(e.g. python -c \"import secrets; print(secrets.token_urlsafe(24))\")"
        )


def reachable_hosts(config: ServerConfig) -> frozenset[str]:
    """The host names and addresses a request may carry in `Host` (lower case, no brackets)."""
    names = set(LOOPBACK_NAMES) | {_allowed_name(h) for h in config.allowed_hosts}
    host = config.host.lower().strip("[]")
    if host in WILDCARDS:
        hostname = socket.gethostname()
        names |= {hostname.lower(), socket.getfqdn().lower()}
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(hostname, None)}
        except OSError:
            pass  # no resolvable name: allowed_hosts says the rest
    else:
        names.add(host)
    return frozenset(names)


def _allowed_name(entry: str) -> str:
    """An allowed_hosts entry as `Host` is compared: people write "name:8765" as often as "name"."""
    entry = entry.strip().lower()
    if entry.count(":") > 1 and not entry.startswith("["):
        return entry  # a bare IPv6 address
    return _host_and_port(entry)[0] or entry.strip("[]")


def _host_and_port(netloc: str) -> tuple[str, int | None]:
    parsed = urlsplit("//" + netloc)
    try:
        port = parsed.port
    except ValueError:
        port = -1  # a port that is not a number: matches nothing
    return (parsed.hostname or "").lower(), port


def refusal(headers, query: dict[str, list[str]], config: ServerConfig, hosts: frozenset[str], port: int,
            needs_token: bool) -> tuple[int, str] | None:
    """(HTTP status, why) when the request must be refused, else None."""
    host, host_port = _host_and_port(headers.get("Host", ""))
    if host not in hosts:
        return 421, (f"this daemon does not answer to the host {headers.get('Host', '')!r}; open it as "
                     f"http://127.0.0.1:{port}/ or add the name to server.allowed_hosts")
    origin = headers.get("Origin")
    if origin is not None:
        parsed = urlsplit(origin)
        origin_host, origin_port = _host_and_port(parsed.netloc)
        if origin == "null" or parsed.scheme != "http" or (origin_host, origin_port or 80) != (host, host_port or 80):
            return 403, f"requests from the page at {origin} are refused: open the dashboard from this server"
    if needs_token and config.token:
        given = query.get("token", [""])[-1]
        if not hmac.compare_digest(given.encode(), config.token.encode()):
            return 401, "missing or wrong token: add ?token=... (the server's server.token)"
    return None
