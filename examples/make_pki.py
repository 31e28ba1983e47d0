"""Make the certificates the examples use, with tlskit: a CA, a server, two clients, and a client of another CA.

    python examples/make_pki.py            # into ./pki
    python examples/make_pki.py DIR

Writes DIR/ca/ (the root CA: ca.pem, ca-key.pem), DIR/server.pem + DIR/server-key.pem (localhost, 127.0.0.1,
::1), DIR/alice.pem and DIR/bob.pem (client certificates) with their keys, and DIR/mallory.pem, a client
certificate from another CA (DIR/other-ca/) that the examples' servers refuse.  The same with the command line:

    tlskit ca init pki/ca --name "tlskit Examples CA"
    tlskit ca issue pki/ca localhost 127.0.0.1 ::1 --out pki/server
    tlskit ca issue pki/ca alice --client --out pki/alice
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tlskit import CertificateAuthority, Profile


def make_pki(directory: Path) -> None:
    """Create the examples' CA and certificates in ``directory`` (which must not hold them yet)."""
    ca = CertificateAuthority.create_root(directory / "ca", name="tlskit Examples CA")
    ca.issue(["localhost", "127.0.0.1", "::1"]).write(directory / "server")
    for name in ("alice", "bob"):
        ca.issue([name], profile=Profile.CLIENT).write(directory / name)
    other = CertificateAuthority.create_root(directory / "other-ca", name="Some Other CA")
    other.issue(["mallory"], profile=Profile.CLIENT).write(directory / "mallory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", nargs="?", default="pki", type=Path, help="where to write (default: ./pki)")
    args = parser.parse_args()
    make_pki(args.directory)
    print(f"wrote {args.directory}/: ca/ca.pem, server.pem, alice.pem, bob.pem, mallory.pem (another CA) and keys")


if __name__ == "__main__":
    main()
