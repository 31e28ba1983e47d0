"""The Public Suffix List: which names are registries (``com``, ``co.uk``) or shared namespaces (``github.io``).

A wildcard certificate for ``*.co.uk`` or ``*.s3.amazonaws.com`` would cover names of many different owners; the
CA/B Forum Baseline Requirements (3.2.2.6) forbid such wildcards, and web PKI verifiers refuse them.  The list
comes from the ``publicsuffixlist`` package, which ships it (no download at run time; updating the package updates
the list), with both sections: ICANN's registries and the private namespaces of hosting providers.  A name the
list does not know ends in an unknown top-level label, which counts as a public suffix (the list's ``*`` rule),
so ``*.internal`` is refused as ``*.com`` is, while ``*.corp.internal`` is fine.
"""

from __future__ import annotations

import functools

from publicsuffixlist import PublicSuffixList

__all__ = ["is_public_suffix"]


@functools.cache
def _list() -> PublicSuffixList:
    return PublicSuffixList()  # parsed once (about 0.2 s), on the first wildcard checked


def is_public_suffix(name: str) -> bool:
    """Whether ``name`` (A-labels, any case, no trailing dot needed) is a public suffix."""
    domain = name.strip().rstrip(".").lower()
    return bool(domain) and bool(_list().is_public(domain))
