"""A loopback TCP proxy that tests can open and close, to make a server 'go away'."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.servers import free_port


class TcpProxy:
    """Forwards 127.0.0.1:<port> to an upstream address while open; refuses while closed."""

    def __init__(self, upstream: tuple[str, int], *, lose_answers: int = 0) -> None:
        """`lose_answers`: for that many first connections, the upstream's answer is never
        passed on: the client's connection is cut when it arrives (the request was served,
        the client cannot know)."""
        self.upstream = upstream
        self.lose_answers = lose_answers
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        """Stop listening and cut every forwarded connection."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone leaves the
            # kernel's listener alive under that call, still accepting connections.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._listener is not listener:  # closed while this one was accepted
                client.close()
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
                lose = self.lose_answers > 0
                self.lose_answers -= lose
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            answer = self._cut if lose else self._pump
            threading.Thread(target=answer, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _cut(src: socket.socket, dst: socket.socket) -> None:
        """Wait for `src` to answer, then cut `dst` without passing the answer on."""
        with contextlib.suppress(OSError):
            src.recv(65536)
        for conn in (dst, src):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
