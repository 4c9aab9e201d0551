"""free_port: the ports tests start services on late in a run stay theirs until then."""

from __future__ import annotations

import socket

from adplatform.localstack import free_port


def _ephemeral_range() -> tuple[int, int]:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(part) for part in f.read().split())
    return low, high


def test_ports_lie_below_the_ephemeral_range_so_no_outgoing_connection_takes_them() -> None:
    low, _ = _ephemeral_range()
    for span in (1, 3, 6):
        port = free_port(span)
        assert port + span - 1 < low


def test_no_port_is_handed_out_twice_and_each_block_is_free() -> None:
    blocks = [range(port, port + 6) for port in (free_port(span=6) for _ in range(50))]
    handed = [port for block in blocks for port in block]
    assert len(handed) == len(set(handed))
    for port in handed[:12]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # raises if anything holds it
