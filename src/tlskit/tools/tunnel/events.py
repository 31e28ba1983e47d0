"""What a tunnel reports: one record per connection, and one per refused peer or failed handshake.

Each is logged as one line on the ``tlskit.tunnel`` logger: the message is the text form (strings from
certificates and the network escaped through :func:`tlskit._text.printable`), and the record's ``tunnel_event``
attribute holds the same facts as a JSON-able dict, for a JSON formatter (``tlskit tunnel --log-format json``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..._text import printable
from ...net.server import format_peer

if TYPE_CHECKING:
    from cryptography import x509

    from ...errors import TLSError
    from ...net.connection import TLSConnection

__all__ = ["ConnectionRecord", "identity", "log", "log_event", "log_failure"]

log = logging.getLogger("tlskit.tunnel")


def identity(cert: x509.Certificate | None) -> str | None:
    """A certificate's identity for a log line: its URI SANs (SPIFFE IDs) and CN, else its first DNS name."""
    if cert is None:
        return None
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    names = [f"CN={a.value!s}" for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        names = [f"URI={u}" for u in san.get_values_for_type(x509.UniformResourceIdentifier)] + names
        if not names:
            names = [f"DNS={d}" for d in san.get_values_for_type(x509.DNSName)[:1]]
    return printable(",".join(names)) if names else None


def log_event(level: int, text: str, event: dict[str, Any]) -> None:
    """One line on the ``tlskit.tunnel`` logger, with ``event`` for structured formatters."""
    if log.isEnabledFor(level):
        log.log(level, text, extra={"tunnel_event": event})


@dataclass(slots=True)
class ConnectionRecord:
    """One tunnelled connection, filled in as it goes and logged once it ends."""

    tunnel: str
    peer: str
    target: str
    identity: str | None = None
    protocol: str | None = None
    cipher: str | None = None
    resumed: bool = False
    sni: str | None = None
    to_target: int = 0
    to_client: int = 0
    seconds: float = 0.0
    ended: str = ""

    @classmethod
    def of(cls, tunnel: str, peer: Any, target: str, conn: TLSConnection) -> ConnectionRecord:
        cipher = conn.cipher
        return cls(
            tunnel=tunnel,
            peer=format_peer(peer),
            target=target,
            identity=identity(conn.peer_certificate),
            protocol=conn.protocol,
            cipher=cipher.name if cipher else None,
            resumed=conn.session_reused,
            sni=printable(conn.server_name) if conn.server_name else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "connection",
            "tunnel": self.tunnel,
            "peer": self.peer,
            "target": self.target,
            "identity": self.identity,
            "protocol": self.protocol,
            "cipher": self.cipher,
            "resumed": self.resumed,
            "sni": self.sni,
            "bytes_to_target": self.to_target,
            "bytes_to_client": self.to_client,
            "seconds": round(self.seconds, 6),
            "ended": printable(self.ended),
        }

    def text(self) -> str:
        who = self.identity or "no certificate"
        return (
            f"[{self.tunnel}] {self.peer} ({who}) -> {self.target}: {self.protocol} {self.cipher}, "
            f"{'resumed' if self.resumed else 'full handshake'}, {self.to_target} B to target, "
            f"{self.to_client} B to client, {self.seconds:.3f} s, {printable(self.ended)}"
        )

    def emit(self) -> None:
        log_event(logging.INFO, self.text(), self.as_dict())


def log_failure(tunnel: str, peer: Any, error: TLSError, *, refused: bool) -> None:
    """One line for a peer that the policy refused, or whose handshake failed: who, the code, why, the fix."""
    where = format_peer(peer)
    what = "refused" if refused else "handshake failed"
    text = f"[{tunnel}] {where} {what}: {error.code}: {printable(str(error))}"
    event = {
        "event": "refused" if refused else "handshake_failed",
        "tunnel": tunnel,
        "peer": where,
        "code": error.code,
        "message": printable(error.message),
        "fix": printable(error.fix),
    }
    log_event(logging.WARNING, text, event)
