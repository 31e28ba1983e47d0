"""``tlskit tunnel --config FILE.toml``: several tunnels from one TOML file, with the same keys as the flags.

```toml
log-format = "json"              # optional: text (default) or json
metrics = "127.0.0.1:9100"       # optional: /metrics and /healthz

[tunnel.api]                     # one table per tunnel; its name appears in every log line
mode = "server"
listen = "0.0.0.0:8443"
target = "127.0.0.1:8080"
cert = "server.pem"              # relative paths are relative to this file
key = "server-key.pem"
ca = "clients-ca.pem"
allow-uri = ["spiffe://example.org/ns/prod/sa/web"]
proxy-protocol = "v2"
```

Every problem is one line naming the file, the tunnel's table, the key and the fix (exit 2).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, TlskitError
from ..tools.tunnel.spec import Endpoint, TunnelSpec, parse_endpoint

__all__ = ["TunnelConfig", "config_words", "load_config"]

# TOML key -> TunnelSpec parameter (keys are the flags without their dashes).
_KEYS = {
    "mode": "mode",
    "listen": "listen",
    "target": "target",
    "cert": "cert",
    "key": "key",
    "ca": "ca",
    "client-auth": "client_auth",
    "servername": "servername",
    "allow-cn": "allow_cn",
    "allow-dns": "allow_dns",
    "allow-ip": "allow_ip",
    "allow-uri": "allow_uri",
    "pin": "pins",
    "proxy-protocol": "proxy_protocol",
    "max-connections": "max_connections",
    "handshake-timeout": "handshake_timeout",
    "idle-timeout": "idle_timeout",
    "connect-timeout": "connect_timeout",
    "drain-timeout": "drain_timeout",
    "workers": "workers",
}
_PARAMETER_KEYS = {param: key for key, param in _KEYS.items()}
_GLOBAL_KEYS = ("log-format", "metrics", "tunnel")
_PATH_KEYS = ("cert", "key", "ca")
_PARAMETER = re.compile(r"\b(?P<name>[a-z][a-z_]*)=(?P<value>[A-Za-z0-9][\w.-]*)?")


def config_words(text: str) -> str:
    """A library message in the configuration file's words: ``client_auth=optional`` -> ``client-auth = "optional"``."""

    def key(m: re.Match[str]) -> str:
        name = _PARAMETER_KEYS.get(m["name"])
        if name is None:
            return m[0]
        value = m["value"]
        return name if value is None else f'{name} = "{value}"'

    return _PARAMETER.sub(key, text)


@dataclass(frozen=True)
class TunnelConfig:
    """What a configuration file holds: the tunnels, and the process-wide settings."""

    path: Path
    specs: tuple[TunnelSpec, ...]
    log_format: str | None
    metrics: Endpoint | None


def _error(path: Path, where: str, exc: TlskitError | str) -> InputError:
    if isinstance(exc, str):
        return InputError(f"{path}: {where}{exc}")
    return InputError(f"{path}: {where}{config_words(exc.message)}", fix=config_words(exc.fix))


def _suggest(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key.replace("_", "-"), known, n=1)
    return f"did you mean {close[0]}?" if close else "known keys: " + ", ".join(known)


def load_config(path: str | Path) -> TunnelConfig:
    """Read and validate ``path``; raise :class:`InputError` naming the file, the table, the key and the fix."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the configuration ({exc.strerror})", fix="check the path") from exc
    except UnicodeDecodeError:
        raise InputError(f"{path}: is not UTF-8 text", fix="save the configuration as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})", fix="fix the syntax at that line") from None
    for key in data:
        if key not in _GLOBAL_KEYS:
            raise InputError(f"{path}: unknown top-level key {key!r}", fix=_suggest(key, _GLOBAL_KEYS))
    log_format = data.get("log-format")
    if log_format is not None and log_format not in ("text", "json"):
        raise InputError(f"{path}: log-format = {log_format!r} is neither text nor json", fix='write "text" or "json"')
    metrics = None
    if "metrics" in data:
        try:
            metrics = parse_endpoint(data["metrics"], param="metrics", listening=True)
        except InputError as exc:
            raise _error(path, "", exc) from None
    tunnels = data.get("tunnel")
    if not isinstance(tunnels, dict) or not tunnels:
        raise InputError(f"{path}: no tunnel is defined", fix="add a [tunnel.NAME] table with mode, listen, target")
    specs = []
    for name, table in tunnels.items():
        where = f"[tunnel.{name}] "
        if not isinstance(table, dict):
            raise InputError(f"{path}: tunnel.{name} is not a table", fix=f"write it as a [tunnel.{name}] section")
        kwargs: dict[str, Any] = {"name": name}
        for key, value in table.items():
            param = _KEYS.get(key)
            if param is None:
                raise InputError(f"{path}: {where}unknown key {key!r}", fix=_suggest(key, tuple(_KEYS)))
            kwargs[param] = _relative_to(path, value) if key in _PATH_KEYS else value
        for required in ("mode", "listen", "target"):
            if required not in table:
                raise InputError(f"{path}: {where}has no {required}", fix=f"add {required} = ... to [tunnel.{name}]")
        try:
            specs.append(TunnelSpec(**kwargs))
        except InputError as exc:
            raise _error(path, where, exc) from None
    return TunnelConfig(path, tuple(specs), log_format, metrics)


def _relative_to(config: Path, value: Any) -> Any:
    base = config.parent
    if isinstance(value, str) and value:
        return str(base / value)
    if isinstance(value, list):
        return [str(base / v) if isinstance(v, str) and v else v for v in value]
    return value


def check_files(config: TunnelConfig) -> None:
    """Build every tunnel's context once, so a missing or mismatched file is reported before anything listens."""
    for spec in config.specs:
        try:
            spec.context()
        except InputError as exc:
            raise _error(config.path, f"[tunnel.{spec.name}] ", exc) from None
