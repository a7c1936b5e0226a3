"""A TCP forwarder on loopback that a fault can switch off and on again.

``TcpProxy(target_host, target_port).start()`` listens on a free local port (``proxy.port``)
and forwards every connection to the target, byte for byte, in both directions (two threads
per connection). ``cut()`` makes the target unreachable the way a crashed server or a
partitioned network does: every open connection is reset (``SO_LINGER`` 0, so the peer gets
an RST, not a polite FIN) and the listening socket is closed, so new connections are refused
(``ECONNREFUSED``). ``restore()`` listens on the same port again. Nothing is buffered or
replayed across a cut.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from types import TracebackType

_CHUNK = 65536
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 seconds: close() sends an RST


def _reset(sock: socket.socket) -> None:
    """Close a socket abruptly (RST), ignoring a socket that is closed already.

    A pump thread blocked reading the socket is woken first (``SHUT_RD`` sends nothing):
    Linux does not release a socket that another thread is still reading, so ``close()``
    alone left it open, unread and silent, and a client whose query was in flight at the cut
    waited for its answer for ever (found by the scale-out fault run: a worker outlived
    gunicorn's SIGTERM; the proxy, not the service, was at fault).
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``; ``cut`` and ``restore``.

    Thread-safe: ``cut``/``restore`` may be called from any thread while connections flow.
    """

    def __init__(
        self, target_host: str, target_port: int, listen_host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = port
        self.accepted = 0  # connections accepted since start
        self.cuts = 0
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._up = False

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        """Start listening (on a free port unless one was given) and forwarding."""
        self._listen()
        return self

    def close(self) -> None:
        """Stop for good: reset every connection and stop listening."""
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def is_up(self) -> bool:
        """Whether the proxy is accepting and forwarding connections."""
        return self._up

    @property
    def open_connections(self) -> int:
        """Sockets currently open on either side (two per forwarded connection)."""
        with self._lock:
            return len(self._connections)

    # --- faults -----------------------------------------------------------------------------

    def cut(self) -> None:
        """Refuse new connections and reset every open one, at once."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, set()
            was_up, self._up = self._up, False
        if was_up:
            self.cuts += 1
        if listener is not None:
            try:  # wakes the thread blocked in accept() (close() alone does not on Linux)
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        for sock in connections:
            _reset(sock)

    def restore(self, timeout: float = 10.0) -> None:
        """Listen on the same port again (retrying briefly should the port still be busy)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._listen()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # --- forwarding -------------------------------------------------------------------------

    def _listen(self) -> None:
        with self._lock:
            if self._up:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((self.listen_host, self.port))
            except OSError:
                listener.close()
                raise
            listener.listen(128)
            self.port = listener.getsockname()[1]
            self._listener, self._up = listener, True
        threading.Thread(
            target=self._accept, args=(listener,), name=f"proxy-accept-{self.port}", daemon=True
        ).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _reset(client)
                    _reset(upstream)
                    return
                self._connections.update((client, upstream))
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink), name="proxy-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy one direction until either side ends; then end both."""
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._connections.discard(source)
                self._connections.discard(sink)
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    sock.close()
                except OSError:
                    pass
