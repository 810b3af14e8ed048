"""asyncio transports and servers over DockNet: TCP over the slave's lwIP
(``tcp``), fast channels between endpoints on one host (``fastchannel``),
UDP (``udp``) and listening servers (``server``)."""
