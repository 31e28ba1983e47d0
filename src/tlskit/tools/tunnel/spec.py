"""What one tunnel is: :class:`TunnelSpec`, immutable, keyword-only, validated when it is made.

A spec names its mode (``server``: TLS in, plaintext to the target; ``client``: plaintext in, TLS to the
target), where it listens and where it connects, the files of its identity and trust, the peer policy (the
allow-lists and pins of :class:`~tlskit.net.policy.PeerPolicy`) and its limits.  Invalid values raise
:class:`~tlskit.errors.InputError` naming the parameter (``target=``, ``proxy_protocol=``), before anything
listens.  The contexts and the policy are built from the files on every call, which is what a reload does.
"""

from __future__ import annotations

import enum
import re
import ssl
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...net.context import ClientAuth, parse_choice
from ...net.policy import PeerPolicy, validate_policy

__all__ = ["Endpoint", "Mode", "ProxyProtocol", "TunnelSpec", "parse_endpoint"]


class Mode(enum.Enum):
    """``server``: terminate TLS, forward plaintext; ``client``: accept plaintext, originate TLS."""

    SERVER = "server"
    CLIENT = "client"


class ProxyProtocol(enum.Enum):
    """The PROXY protocol header sent to the target first (see :mod:`tlskit.tools.tunnel.proxy`)."""

    V1 = "v1"
    V2 = "v2"

    @property
    def version(self) -> int:
        return 1 if self is ProxyProtocol.V1 else 2


@dataclass(frozen=True)
class Endpoint:
    """A TCP ``host:port``, or a Unix socket ``path`` (host None)."""

    host: str | None
    port: int = 0
    path: str | None = None

    @property
    def unix(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = self.host or ""
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


def parse_endpoint(text: Any, *, param: str, listening: bool, unix: bool = False) -> Endpoint:
    """``HOST:PORT``, ``[V6]:PORT``, ``unix:PATH`` (if ``unix``) or, when ``listening``, a bare ``PORT``.

    A listener without a host gets 127.0.0.1 (loopback only: other machines need 0.0.0.0 or [::] said aloud).
    """
    from ..tap import parse_endpoint as parse_tcp

    if isinstance(text, int) and not isinstance(text, bool) and listening:
        text = str(text)
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{param}= must be a text such as localhost:8443", fix=f"give {param}=HOST:PORT")
    raw = text.strip()
    if raw.startswith("unix:"):
        path = raw.removeprefix("unix:")
        if not unix:
            raise InputError(f"{param}= {raw!r}: a Unix socket is not possible here", fix=f"give {param}=HOST:PORT")
        if not path:
            raise InputError(f"{param}= {raw!r} names no socket path", fix=f"write {param}=unix:/run/app.sock")
        return Endpoint(None, 0, path)
    tcp = parse_tcp(raw, default_host="127.0.0.1" if listening else None, what=f"{param}=")
    if tcp.port == 0 and not listening:
        raise InputError(f"{param}= {raw!r} has port 0", fix="give the port the service listens on")
    return Endpoint(tcp.host, tcp.port)


def _paths(value: Any, param: str) -> tuple[Path, ...]:
    items = [value] if isinstance(value, str | Path) else list(value or ())
    out = []
    for item in items:
        if not isinstance(item, str | Path) or not str(item).strip():
            raise InputError(f"{param}= has an empty or non-text entry {item!r}", fix=f"give {param}= file names")
        out.append(Path(item))
    return tuple(out)


def _names(value: Any, param: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value or ())
    if not all(isinstance(item, str) for item in items):
        raise InputError(f"{param}= must be a list of texts, not {value!r}", fix=f'write {param}=["name", ...]')
    return tuple(items)


def _seconds(value: Any, param: str, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InputError(f"{param}= must be a positive number of seconds, not {value!r}", fix=f"give {param}=10")
    return float(value)


def _count(value: Any, param: str, *, low: int = 1, high: int | None = None, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise InputError(f"{param}= must be a whole number {bound}, not {value!r}", fix=f"give {param}={low}")
    return value


@dataclass(frozen=True, kw_only=True)
class TunnelSpec:
    """One tunnel, validated.  ``TunnelSpec(mode="server", listen="0.0.0.0:8443", target="127.0.0.1:8080", ...)``.

    Text values are parsed here (``listen``/``target`` into :class:`Endpoint`, ``mode``, ``client_auth``,
    ``proxy_protocol`` into their enums), so a spec built from flags or from a TOML file is the same value.
    """

    mode: Mode
    listen: Endpoint
    target: Endpoint
    name: str = "tunnel"
    cert: Path | None = None
    key: Path | None = None
    ca: tuple[Path, ...] = ()
    client_auth: ClientAuth | None = None
    """Server mode: None means "required with ca=, else none" (ghostunnel's and tlskit serve's default)."""
    servername: str | None = None
    """Client mode: the name sent as SNI and verified (default: the target's host)."""
    allow_cn: tuple[str, ...] = ()
    allow_dns: tuple[str, ...] = ()
    allow_ip: tuple[str, ...] = ()
    allow_uri: tuple[str, ...] = ()
    pins: tuple[str, ...] = ()
    proxy_protocol: ProxyProtocol | None = None
    max_connections: int | None = None
    handshake_timeout: float = 10.0
    idle_timeout: float | None = None
    connect_timeout: float = 10.0
    drain_timeout: float = 10.0
    workers: int = 1

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__  # frozen: normalised values are set once, here
        mode: Mode = parse_choice(Mode, self.mode, "mode=")
        setattr_(self, "mode", mode)
        server = mode is Mode.SERVER
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.name):
            raise InputError(f"name= {self.name!r} is not a short name", fix="use letters, digits, '.', '-' or '_'")
        listen: Any = self.listen  # text is accepted too (flags, configuration files)
        if not isinstance(listen, Endpoint):
            setattr_(self, "listen", parse_endpoint(listen, param="listen", listening=True, unix=not server))
        target: Any = self.target
        if not isinstance(target, Endpoint):
            setattr_(self, "target", parse_endpoint(target, param="target", listening=False, unix=server))
        for param in ("cert", "key"):
            value = getattr(self, param)
            if value is not None:
                setattr_(self, param, _paths(value, param)[0])
        setattr_(self, "ca", _paths(self.ca, "ca"))
        for param in ("allow_cn", "allow_dns", "allow_ip", "allow_uri", "pins"):
            setattr_(self, param, _names(getattr(self, param), param))
        if self.client_auth is not None:
            setattr_(self, "client_auth", parse_choice(ClientAuth, self.client_auth, "client_auth="))
        if self.proxy_protocol is not None:
            setattr_(self, "proxy_protocol", parse_choice(ProxyProtocol, self.proxy_protocol, "proxy_protocol="))
        setattr_(self, "max_connections", _count(self.max_connections, "max_connections", optional=True))
        setattr_(self, "workers", _count(self.workers, "workers", high=256))
        for param in ("handshake_timeout", "connect_timeout", "drain_timeout"):
            setattr_(self, param, _seconds(getattr(self, param), param, optional=False))
        setattr_(self, "idle_timeout", _seconds(self.idle_timeout, "idle_timeout", optional=True))
        if self.servername is not None and (not isinstance(self.servername, str) or not self.servername.strip()):
            raise InputError(f"servername= {self.servername!r} is empty", fix="give the server's name, or leave it out")
        self.policy()  # invalid pins or addresses fail here, before any file is read
        self._check_mode()

    def _check_mode(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise InputError("cert= and key= go together", fix="give both cert= and key=, or neither")
        if self.mode is Mode.SERVER:
            if self.cert is None:
                raise InputError("a server tunnel needs its certificate", fix="give cert= and key=")
            if self.servername is not None:
                raise InputError("servername= is for client tunnels", fix="leave servername= out in server mode")
            if self.client_auth not in (None, ClientAuth.NONE) and not self.ca:
                raise InputError(
                    f"client_auth={self.client_auth.value} needs the CA of the client certificates",
                    fix="give ca= (the CA file that issued the clients' certificates)",
                )
            if self.policy() is not None and self.effective_client_auth is ClientAuth.NONE:
                raise InputError(
                    "an allow-list or pins need client certificates, and this tunnel does not ask for them",
                    fix="use client_auth=optional or client_auth=required"
                    if self.ca  # ca= is given: client_auth=none is what turned them off
                    else "give ca= (client certificates are then required), or client_auth=optional",
                )
        else:
            if self.proxy_protocol is not None:
                raise InputError("proxy_protocol= is for server tunnels", fix="leave proxy_protocol= out")
            if self.client_auth is not None:
                raise InputError("client_auth= is for server tunnels", fix="leave client_auth= out in client mode")
            if self.workers != 1:
                raise InputError("workers= is for server tunnels", fix="leave workers= out in client mode")
            if self.idle_timeout is not None:
                raise InputError("idle_timeout= is for server tunnels", fix="leave idle_timeout= out in client mode")
            if self.allow_cn:
                raise InputError(
                    "allow_cn= is for server tunnels: a server is named by its DNS names",
                    fix="use allow_dns= (or pins=) to restrict which servers a client tunnel accepts",
                )

    # -- derived ---------------------------------------------------------------------------------------------

    @property
    def effective_client_auth(self) -> ClientAuth:
        """What a server tunnel asks of clients: ``client_auth``, or required with ``ca`` and none without."""
        if self.client_auth is not None:
            return self.client_auth
        return ClientAuth.REQUIRED if self.ca else ClientAuth.NONE

    def policy(self) -> PeerPolicy | None:
        """The peer policy of the allow-lists and pins (None when there are none)."""
        policy = PeerPolicy(
            allow_cn=self.allow_cn, allow_dns=self.allow_dns, allow_ip=self.allow_ip, allow_uri=self.allow_uri,
            pins=self.pins,
        )  # fmt: skip
        return policy or None

    def context(self) -> ssl.SSLContext:
        """A fresh context from the files (what a reload calls), checked against the policy."""
        from ...net.context import client_context, server_context

        if self.mode is Mode.SERVER:
            assert self.cert is not None and self.key is not None
            ctx = server_context(
                cert=self.cert, key=self.key, ca=list(self.ca) or None, client_auth=self.effective_client_auth
            )
        else:
            ctx = client_context(ca=list(self.ca) or None, cert=self.cert, key=self.key)
        validate_policy(self.policy(), ctx)
        return ctx

    @property
    def files(self) -> tuple[Path, ...]:
        """The files a reload reads again (certificate, key, CAs)."""
        return tuple(p for p in (self.cert, self.key, *self.ca) if p is not None)

    def restart_needed(self, other: TunnelSpec) -> tuple[str, ...]:
        """The parameters ``other`` changes that a reload cannot apply (empty: ``other`` can take this spec's place).

        Where it listens, the mode and the workers are fixed when it starts listening; so, in server mode, are the
        limits the server enforces (max_connections, handshake_timeout, idle_timeout).  A client tunnel reads its
        limits for every connection.
        """
        fixed = ["mode", "listen", "workers"]
        if self.mode is Mode.SERVER:
            fixed += ["max_connections", "handshake_timeout", "idle_timeout"]
        return tuple(name for name in fixed if getattr(self, name) != getattr(other, name))

    @classmethod
    def parameters(cls) -> tuple[str, ...]:
        """The parameter names (what a configuration file may set)."""
        return tuple(f.name for f in fields(cls))
