"""Who may watch the MJPEG stream: the token, where it comes from, and how a request shows it.

Bound to a loopback address the stream may stay open; bound to anything else, every request
must carry the token (see :class:`edge.outputs.MjpegServer`). The token comes from the
environment (``$BINLAND_STREAM_TOKEN``, which ``edge.deploy`` writes into the service's
root-only settings file) or from a file, never from a command-line argument: ``ps`` shows
those to every user. Nothing here logs it.

No OpenCV or NumPy here: ``edge.deploy`` and ``edge.doctor`` use it too.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import os
import secrets
import socket
import stat
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from .errors import EdgeError

TOKEN_ENV = "BINLAND_STREAM_TOKEN"  # where edge.live and the deployed service find the token
STREAM_USER = "binland"  # the user name a browser's sign-in box suggests (any name is accepted)
MIN_TOKEN_LENGTH = 12
# A token file holds one short line; anything larger is not one (and /dev/zero never ends).
MAX_TOKEN_FILE_BYTES = 4096
# Host names a loopback stream answers to besides IP literals: what a browser on this machine
# sends. Any other name may be a DNS rebinding attack (see host_allowed).
LOOPBACK_NAMES = ("localhost",)


def new_token() -> str:
    """A fresh stream token: 24 URL-safe characters (144 random bits)."""
    return secrets.token_urlsafe(18)


def check_token(token: str, origin: str) -> str:
    """``token`` without surrounding whitespace, or an EdgeError naming ``origin`` (never the
    token itself)."""
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise EdgeError(
            f"the stream token from {origin} is shorter than {MIN_TOKEN_LENGTH} "
            "characters; make one with: python -c 'import secrets; "
            "print(secrets.token_urlsafe(18))'"
        )
    if not all(33 <= ord(c) < 127 for c in token):
        raise EdgeError(f"the stream token from {origin} must be printable ASCII without spaces")
    return token


def read_token(path: str | Path | None = None) -> str | None:
    """The token from the file ``path`` (its first non-empty line), else from
    ``$BINLAND_STREAM_TOKEN``; None when neither gives one."""
    if path is not None:
        text = _read_token_file(Path(path))
        first = next((line for line in text.splitlines() if line.strip()), "")
        return check_token(first, str(path))
    value = os.environ.get(TOKEN_ENV, "")
    return check_token(value, f"${TOKEN_ENV}") if value.strip() else None


def _read_token_file(path: Path) -> str:
    """A regular file's text, at most MAX_TOKEN_FILE_BYTES. O_NONBLOCK: opening a FIFO must not
    wait for a writer that never comes; it is refused right after, like any non-regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise EdgeError(f"cannot read the token file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise EdgeError(f"the token file {path} is not a regular file")
        if info.st_size > MAX_TOKEN_FILE_BYTES:
            raise EdgeError(
                f"the token file {path} is larger than {MAX_TOKEN_FILE_BYTES} "
                "bytes; it should hold the token alone"
            )
        data = os.read(fd, MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise EdgeError(f"cannot read the token file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def host_allowed(host_header: str | None, extra_names: tuple[str, ...] | list[str] = ()) -> bool:
    """Whether a request to a stream bound to loopback may be answered, from its ``Host``.

    DNS rebinding: a web page from evil.example re-points that name at 127.0.0.1, and the
    browser, seeing the same origin, lets the page read the stream. Its requests still say
    ``Host: evil.example``. So a loopback stream answers only an IP literal (the browser then
    treats the address itself as the origin), ``localhost`` and the names in ``extra_names``.
    No Host at all (HTTP/1.0 tools) is allowed: browsers always send one."""
    if host_header is None:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6]:port
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:  # name:port or v4:port
        host = host.partition(":")[0]
    host = host.rstrip(".")
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    names = {*LOOPBACK_NAMES, *(n.strip().lower().rstrip(".") for n in extra_names)}
    return host in names


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def stream_url(host: str, port: int, token: str | None = None) -> str:
    """The page's address; with ``token``, the address that opens it without a sign-in box.

    A wildcard address (0.0.0.0) becomes this machine's host name."""
    if host in ("0.0.0.0", "", "::"):
        host = socket.gethostname()
    elif ":" in host:  # an IPv6 address goes in brackets
        host = f"[{host}]"
    return f"http://{host}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def authorized(token: bytes | None, target: str, authorization: str | None) -> bool:
    """Whether a request for ``target`` (path and query) with this ``Authorization`` header
    shows ``token``: as ``?token=``, as basic auth (any user name, the token as password) or as
    a bearer token. No token: everything is allowed. Compared in constant time."""
    if token is None:
        return True
    offered = parse_qs(urlsplit(target).query).get("token", [])
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            offered.append(
                base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
            )
        except (ValueError, UnicodeDecodeError):
            pass
    elif scheme.lower() == "bearer":
        offered.append(value.strip())
    ok = False
    for candidate in offered:  # every candidate is compared, each in constant time
        ok |= hmac.compare_digest(candidate.encode("utf-8", "replace"), token)
    return ok
