"""A small loopback TCP proxy that delays each chunk sent to the server: a slow node on purpose."""

from __future__ import annotations

import select
import socket
import threading
import time


class DelayProxy:
    """Listens on 127.0.0.1:<free port> and forwards to `target`, sleeping `delay` s per client->server chunk."""

    def __init__(self, target: tuple[str, int], delay: float, hold: bytes | None = None, hold_for: float = 0.0) -> None:
        """`hold`: a server->client chunk containing these bytes is held `hold_for` s (a slow reply);
        `held` is set when one is."""
        self.target, self.delay = target, delay
        self.hold, self.hold_for = hold, hold_for
        self.held = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=2)
            self._socks += [client, server]
            t = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        pair = {client: server, server: client}
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select(list(pair), [], [], 0.1)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        time.sleep(self.delay)
                    elif self.hold is not None and self.hold in data:
                        self.held.set()
                        time.sleep(self.hold_for)
                    pair[s].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(2)
