"""Test-only: record every network target this process resolves or connects to (egress test).

Active only when ``KG_EGRESS_LOG`` names a file; appends one JSON line per event. Plain sockets are
seen through ``sys.addaudithook``; uvloop (the proxy's loop) connects and resolves in libuv without
audit events, so its ``create_connection``/``getaddrinfo``/``sock_connect`` are wrapped as well.
"""

import json
import os
import sys

_PATH = os.environ.get("KG_EGRESS_LOG")


def _record(event, host, port=None):
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    with open(_PATH, "a") as out:
        out.write(json.dumps({"event": event, "host": host, "port": port}) + "\n")


def _addr(address):
    if isinstance(address, tuple) and address:
        return address[0], (address[1] if len(address) > 1 else None)
    return address, None


def _audit(event, args):
    if event == "socket.connect" or event == "socket.sendto":
        _record(event, *_addr(args[1]))
    elif event == "socket.getaddrinfo":
        _record(event, args[0], args[1])
    elif event in ("socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"):
        _record(event, args[0])


def _wrap_uvloop():
    try:
        import uvloop
    except ImportError:
        return
    loop_cls = uvloop.Loop
    create_connection, getaddrinfo, sock_connect = (
        loop_cls.create_connection,
        loop_cls.getaddrinfo,
        loop_cls.sock_connect,
    )

    async def _create_connection(self, protocol_factory, host=None, port=None, *args, **kwargs):
        if host is not None or kwargs.get("sock") is None:
            _record("uvloop.create_connection", host, port)
        return await create_connection(self, protocol_factory, host, port, *args, **kwargs)

    async def _getaddrinfo(self, host, port, *args, **kwargs):
        _record("uvloop.getaddrinfo", host, port)
        return await getaddrinfo(self, host, port, *args, **kwargs)

    async def _sock_connect(self, sock, address):
        _record("uvloop.sock_connect", *_addr(address))
        return await sock_connect(self, sock, address)

    loop_cls.create_connection = _create_connection
    loop_cls.getaddrinfo = _getaddrinfo
    loop_cls.sock_connect = _sock_connect


if _PATH:
    sys.addaudithook(_audit)
    _wrap_uvloop()
