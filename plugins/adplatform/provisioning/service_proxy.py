"""The local cluster's Service names, for host processes: an HTTP CONNECT proxy on loopback that
sends ``<service>.<namespace>.svc:<port>`` to the host stand-in serving it.

A host stand-in that calls another (External Secrets Operator calling Vault at
``https://vault.vault.svc:8200``, the address platform-secrets gives every environment) finds no
cluster DNS or Service routing on this machine. Given ``HTTPS_PROXY`` pointing here, its Go HTTP
client tunnels through this proxy (TLS stays end to end: the proxy only copies bytes), and the
values stay the same on every environment. Loopback addresses (the API server) are never proxied
by Go's clients. Run as ``python -m adplatform.provisioning.service_proxy PORT NAME=PORT ...``.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


def handler(routes: dict[str, int]) -> object:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = request.split(b"\r\n", 1)[0].decode().split(" ", 2)
        port = routes.get(target)
        if method != "CONNECT" or port is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\nno host stand-in for this address\n")
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    return handle


async def serve(port: int, routes: dict[str, int]) -> None:
    server = await asyncio.start_server(handler(routes), "127.0.0.1", port)  # type: ignore[arg-type]
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen, *pairs = sys.argv[1:]
    asyncio.run(serve(int(listen), {k: int(v) for k, v in (p.split("=") for p in pairs)}))
