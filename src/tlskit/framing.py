"""Sans-IO message framing (``tlskit.framing``): bytes in, messages out.  Defined in :mod:`tlskit.net.framing`."""

from .net.framing import (
    DEFAULT_MAX_SIZE,
    DelimitedFramer,
    Framer,
    JsonCodec,
    LengthPrefixedFramer,
    framer_from_spec,
)

__all__ = ["DEFAULT_MAX_SIZE", "DelimitedFramer", "Framer", "JsonCodec", "LengthPrefixedFramer", "framer_from_spec"]
