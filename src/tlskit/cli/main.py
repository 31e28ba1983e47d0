"""Entry point of the ``tlskit`` command; each command group lives in its own module."""

from __future__ import annotations

import click

from .. import __version__
from . import bench_cmds, inspect_cmds, net_cmds, pki_cmds, probe_cmds, tools_cmds, tunnel_cmds
from .common import OneLineErrorsGroup


@click.group(cls=OneLineErrorsGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="tlskit")
def cli() -> None:
    """tlskit: keys, certificates and CAs; mutual-TLS servers and clients; tools to see and explain TLS."""


for module in (pki_cmds, inspect_cmds, net_cmds, tools_cmds, probe_cmds, tunnel_cmds, bench_cmds):
    for command in module.commands:
        cli.add_command(command)


def main() -> None:
    """Console-script entry point.  Usage errors exit 2 (click's convention, and ours)."""
    cli(prog_name="tlskit")


if __name__ == "__main__":
    main()
