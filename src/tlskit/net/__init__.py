"""tlskit.net: SSLContext factories, asyncio TLS transport, sans-IO framing."""
