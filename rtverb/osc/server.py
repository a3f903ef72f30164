"""`OscServer`: the one thread that owns the OSC UDP socket.

python-osc's blocking UDP server with ``strict_timing=False`` (bundles never sleep in the server
thread), a large receive buffer (bursts of thousands of messages are not dropped) and datagrams
read up to the UDP maximum (bundles of 65,507 bytes). Only senders inside the allowed networks
(`DEFAULT_ALLOW`: this machine) are heard; others get nothing back. Each datagram goes whole to
`OscController.handle_packet` (so a bundle is one change) and its replies are sent from the
same socket; a subscriber's feedback goes through a socket connected to it, so an unreachable
port (ICMP port unreachable) shows as ``ConnectionRefusedError`` and drops the subscription.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from rtverb.osc.controller import Address, OscController, endpoint
from rtverb.osc.wire import MAX_DATAGRAM_BYTES

log = logging.getLogger(__name__)

#: Receive buffer of the OSC socket: bursts of thousands of messages are not dropped (the
#: default buffer received 257-1538 of 2000 back-to-back messages; a few MB received all).
RECV_BUFFER_BYTES = 4 * 1024 * 1024
#: Who may send without ``--osc-allow``: this machine only (loopback), on any listen address.
DEFAULT_ALLOW = "127.0.0.0/8,::1/128"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow(text: str) -> tuple[Network, ...]:
    """``"192.168.1.0/24,10.0.0.7"`` -> networks; a bare address is a network of one.

    Raises:
        ValueError: a part is not an address or CIDR network (the message names it).
    """
    networks = []
    for part in (p.strip() for p in text.split(",")):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(
                f"--osc-allow: {part!r} is not an address or network; give CIDR networks "
                "separated by commas, e.g. 192.168.1.0/24,10.0.0.7"
            ) from None
    return tuple(networks)


def is_allowed(host: str, networks: Sequence[Network]) -> bool:
    """Whether a sender's address is inside one of ``networks`` (IPv4-mapped IPv6 as IPv4)."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in networks)


class _PacketDispatcher(Dispatcher):
    """Hands whole packets to the controller (bundles as one change) and sends its replies."""

    def __init__(self, controller: OscController) -> None:
        super().__init__(strict_timing=False)
        self.controller = controller
        self.send: Callable[[bytes, Address], None] = lambda data, dest: None
        self._feeds: dict[Address, socket.socket] = {}  # subscriber -> socket connected to it

    def call_handlers_for_packet(self, data: bytes, client_address: Address) -> list[Any]:
        received_s = time.perf_counter()
        for reply in self.controller.handle_packet(data, client_address, received_s):
            try:
                if reply.dest in self.controller.subscribers and reply.dest != client_address:
                    self._feed(reply.dest).send(reply.dgram())
                else:
                    self.send(reply.dgram(), reply.dest)
            except ConnectionRefusedError:  # the port answered ICMP port unreachable
                self.controller.drop_subscriber(reply.dest)
            except OSError as e:  # an unreachable subscriber must not stop the server
                log.debug("OSC reply to %s failed: %s", reply.dest, e)
        for dest in [d for d in self._feeds if d not in self.controller.subscribers]:
            self._feeds.pop(dest).close()
        return []

    def _feed(self, dest: Address) -> socket.socket:
        if dest not in self._feeds:
            family = socket.AF_INET6 if ":" in str(dest[0]) else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(dest)
            self._feeds[dest] = sock
        return self._feeds[dest]

    def close(self) -> None:
        for sock in self._feeds.values():
            sock.close()
        self._feeds.clear()


class _Server(BlockingOSCUDPServer):
    max_packet_size = MAX_DATAGRAM_BYTES + 1  # one byte more: an oversize datagram is refused
    allow: tuple[Network, ...] = ()
    _refused: set[str]

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Senders outside the allowed networks get nothing back (logged once per host);
        malformed packets from allowed ones get an /rtverb/error reply."""
        host = str(client_address[0])
        if is_allowed(host, self.allow):
            return True
        if host not in self._refused and len(self._refused) < 1000:
            self._refused.add(host)
            log.warning("OSC from %s refused: not in --osc-allow", host)
        return False


class OscServer:
    """One thread serving OSC on UDP ``host:port`` for an `OscController`.

    Raises:
        OSError: the port cannot be bound (the message names the port and the fix).
    """

    def __init__(
        self,
        controller: OscController,
        host: str = "127.0.0.1",
        port: int = 9000,
        allow: Sequence[Network] = parse_allow(DEFAULT_ALLOW),
    ) -> None:
        self.dispatcher = _PacketDispatcher(controller)
        self.host, self.allow = host, tuple(allow)
        try:
            self._server = _Server((host, port), self.dispatcher, bind_and_activate=False)
            self._server.allow, self._server._refused = self.allow, set()
            sock = self._server.socket
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)
            self._server.server_bind()
            self._server.server_activate()
        except OSError as e:
            if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL:
                fix = (
                    f"{host} is not an address of this machine: give --osc-host 127.0.0.1, "
                    "0.0.0.0 (every interface) or one of its addresses"
                )
            else:
                fix = "another program (another rtverb?) may use it: pick another --osc-port"
            raise OSError(
                f"cannot listen for OSC on {endpoint(host, port)} ({e.strerror or e}); {fix}"
            ) from None

        def send(data: bytes, dest: Address) -> None:
            sock.sendto(data, dest)

        self.dispatcher.send = send
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def startup_line(self) -> str:
        """Where OSC listens, who may send, and how to let a tablet in."""
        who = ", ".join(map(str, self.allow))
        line = f"OSC on {endpoint(self.host, self.port)}, accepting senders in {who}"
        if self.allow == parse_allow(DEFAULT_ALLOW):
            line += (
                " (this machine only); to let a tablet in: --osc-host 0.0.0.0 "
                "--osc-allow 192.168.1.0/24 (its network) or --osc-allow <its address>"
            )
        return line

    def start(self) -> OscServer:
        log.info("%s", self.startup_line())
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="rtverb-osc",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(2.0)
            self._thread = None
        self._server.server_close()
        self.dispatcher.close()
