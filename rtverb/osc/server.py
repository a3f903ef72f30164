"""`OscServer`: the one thread that owns the OSC UDP socket.

python-osc's blocking UDP server with ``strict_timing=False`` (bundles never sleep in the server
thread) and a large receive buffer (bursts of thousands of messages are not dropped). Each
datagram goes whole to `OscController.handle_packet` (so a bundle is one change) and
its replies are sent from the same socket.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from rtverb.osc.controller import Address, OscController

log = logging.getLogger(__name__)

#: Receive buffer of the OSC socket: bursts of thousands of messages are not dropped (NOTES).
RECV_BUFFER_BYTES = 4 * 1024 * 1024


class _PacketDispatcher(Dispatcher):
    """Hands whole packets to the controller (bundles as one change) and sends its replies."""

    def __init__(self, controller: OscController) -> None:
        super().__init__(strict_timing=False)
        self.controller = controller
        self.send: Callable[[bytes, Address], None] = lambda data, dest: None

    def call_handlers_for_packet(self, data: bytes, client_address: Address) -> list[Any]:
        received_s = time.perf_counter()
        for reply in self.controller.handle_packet(data, client_address, received_s):
            try:
                self.send(reply.dgram(), reply.dest)
            except OSError as e:  # an unreachable subscriber must not stop the server
                log.debug("OSC reply to %s failed: %s", reply.dest, e)
        return []


class _Server(BlockingOSCUDPServer):
    def verify_request(self, request: Any, client_address: Any) -> bool:
        return True  # malformed packets get an /rtverb/error reply instead of silence


class OscServer:
    """One thread serving OSC on UDP ``host:port`` for an `OscController`.

    Raises:
        OSError: the port cannot be bound (the message names the port and the fix).
    """

    def __init__(
        self, controller: OscController, host: str = "127.0.0.1", port: int = 9000
    ) -> None:
        self.dispatcher = _PacketDispatcher(controller)
        try:
            self._server = _Server((host, port), self.dispatcher, bind_and_activate=False)
            sock = self._server.socket
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)
            self._server.server_bind()
            self._server.server_activate()
        except OSError as e:
            raise OSError(
                f"cannot listen for OSC on {host}:{port} ({e.strerror or e}); another program "
                "(another rtverb?) may use it: pick another port with --osc-port"
            ) from None

        def send(data: bytes, dest: Address) -> None:
            sock.sendto(data, dest)

        self.dispatcher.send = send
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> OscServer:
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
