"""tlskit.tools: tap (what a sniffer sees) and probe (why a handshake fails)."""
