"""The ``tlskit`` command: a thin layer over the library."""
