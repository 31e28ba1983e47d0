"""The tunnel section of docs/benchmarks.md: ``tlskit tunnel`` against stunnel4, every figure from ``Results``."""

from __future__ import annotations

from dataclasses import dataclass

from results import Results
from text import ratio_text, table

KINDS = ("tlskit", "stunnel")
LABELS = {"tlskit": "tlskit tunnel", "stunnel": "stunnel4"}


@dataclass(frozen=True)
class TunnelRow:
    """One metric: the two values, the tlskit/stunnel4 ratio and whether it meets ``limit`` (lower is better)."""

    metric: str
    values: dict[str, float]
    fmt: str
    limit: float

    @property
    def ratio(self) -> float | None:
        tl, st = self.values.get("tlskit"), self.values.get("stunnel")
        return None if tl is None or not st else tl / st

    @property
    def met(self) -> bool | None:
        return None if self.ratio is None else self.ratio <= self.limit


def tunnel_rows(r: Results) -> list[TunnelRow]:
    return [
        TunnelRow(
            "Tunnel CPU per GiB relayed (s)", {k: s.cpu_per_gib for k, s in r.tunnel_streams.items()}, ".2f", 1.0
        ),
        TunnelRow(
            "Tunnel CPU per full TLS 1.3 handshake, incl. its connection to the target (µs)",
            {k: h.cpu_per_handshake_us for k, h in r.tunnel_handshakes.items()},
            ".0f",
            1.0,
        ),
        TunnelRow(
            "Tunnel memory per idle tunnelled connection (KiB, VmRSS delta)",
            {k: m.rss_per_conn_kib for k, m in r.tunnel_memory.items()},
            ".1f",
            0.5,
        ),
    ]


def _cells(row: TunnelRow, target: str) -> list[str]:
    values = [format(row.values[k], row.fmt) if k in row.values else "-" for k in KINDS]
    ratio = "" if row.ratio is None else ratio_text(row.ratio, row.limit)
    met = "n/a" if row.met is None else ("yes" if row.met else "**no**")
    return [row.metric, *values, ratio, f"<= {row.limit:g}x{target}", met]


def tunnel_summary(r: Results) -> list[str]:
    body = [_cells(row, " stunnel4") for row in tunnel_rows(r)]
    return table(["Metric", *(LABELS[k] for k in KINDS), "ratio tlskit/stunnel4", "target", "met?"], body)


def tunnel_lines(r: Results) -> list[str]:
    """The rows as plain text for the terminal summary."""
    out = []
    for row in tunnel_rows(r):
        values = "  ".join(f"{LABELS[k]} {format(row.values[k], row.fmt)}" for k in KINDS if k in row.values)
        ratio = "" if row.ratio is None else f"  ratio {ratio_text(row.ratio, row.limit)} (target <= {row.limit:g}x: "
        met = "" if row.met is None else ("met)" if row.met else "NOT met)")
        out.append(f"{row.metric}: {values}{ratio}{met}")
    return out


def tunnel_section(r: Results) -> list[str]:
    if not (r.tunnel_memory or r.tunnel_handshakes or r.tunnel_streams):
        return []
    lines = [
        "## Tunnel: `tlskit tunnel server` vs stunnel4",
        "",
        "Both tunnels terminate TLS with the same certificate and key and forward plaintext to the same echo "
        "server (`bench/plain_echo.py`); the tunnel is pinned to the server CPU, the clients and the echo target "
        "to the other one. tlskit runs what `tlskit tunnel server` runs (`bench/tlskit_tunnel.py`: the library "
        "and the command's one log line per connection); stunnel4 runs with its defaults plus `foreground = yes` "
        "(it logs each connection at its default level too).",
        "",
        *tunnel_summary(r),
        "",
    ]
    sentences = []
    met = [row for row in tunnel_rows(r) if row.met]
    missed = [row for row in tunnel_rows(r) if row.met is False]
    for verdict, chosen in (("Met", met), ("Not met", missed)):
        if chosen:
            said = [
                f"{row.metric.split(' (')[0].lower()} ({ratio_text(row.ratio, row.limit)}, target <= {row.limit:g}x)"
                for row in chosen
            ]
            sentences.append(f"{verdict} in this run: {'; '.join(said)}.")
    hs = r.tunnel_handshakes
    if set(KINDS) <= hs.keys():
        tl, st = hs["tlskit"], hs["stunnel"]
        sentences.append(
            f"Per handshake tlskit spends {tl.user_per_handshake_us:.0f} µs of user and "
            f"{tl.sys_per_handshake_us:.0f} µs of system CPU, stunnel4 {st.user_per_handshake_us:.0f} + "
            f"{st.sys_per_handshake_us:.0f} µs ({tl.handshakes} and {st.handshakes} handshakes, by "
            f"{tl.processes} client processes)."
        )
    streams = r.tunnel_streams
    if set(KINDS) <= streams.keys():
        tl_s, st_s = streams["tlskit"], streams["stunnel"]
        sentences.append(
            f"Streaming {tl_s.echoed / 2**20:.0f} MiB through one connection ran at {tl_s.mib_per_s:.0f} MiB/s "
            f"through tlskit and {st_s.mib_per_s:.0f} MiB/s through stunnel4 ({tl_s.negotiated} and "
            f"{st_s.negotiated})."
        )
    mem = r.tunnel_memory
    if set(KINDS) <= mem.keys():
        tl_m, st_m = mem["tlskit"], mem["stunnel"]
        sentences.append(
            f"Idle connections: {tl_m.opened} through tlskit (RSS {tl_m.before.rss_kib / 1024:.0f} -> "
            f"{tl_m.after.rss_kib / 1024:.0f} MiB), {st_m.opened} through stunnel4 "
            f"({st_m.before.rss_kib / 1024:.0f} -> {st_m.after.rss_kib / 1024:.0f} MiB)."
        )
    if sentences:
        lines += [" ".join(sentences), ""]
    return lines


def tunnel_readme(r: Results) -> list[str]:
    """The README's tunnel rows (none when the run had no tunnel phase)."""
    if not (r.tunnel_memory or r.tunnel_handshakes or r.tunnel_streams):
        return []
    body = [_cells(row, "") for row in tunnel_rows(r)]
    header = ["`tlskit tunnel server` vs stunnel4", "tlskit", "stunnel4", "tlskit / stunnel4", "target", "met?"]
    return ["", *table(header, body)]
