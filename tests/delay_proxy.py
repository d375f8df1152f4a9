"""A small loopback TCP proxy that delays each chunk sent to the server: a slow node on purpose."""

from __future__ import annotations

import select
import socket
import threading
import time


class DelayProxy:
    """Listens on 127.0.0.1:<free port> and forwards to `target`, sleeping `delay` s per client->server chunk."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self._open = threading.Event()  # cleared by hold_replies(): replies wait until release()
        self._open.set()
        self.holding = threading.Event()  # set once a reply is being held
        self._links: set[socket.socket] = set()  # clients that subscribed to invalidations: never held
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
                        if b"__redis__:invalidate" in data:
                            self._links.add(client)
                    elif client not in self._links and not self._open.is_set():
                        self.holding.set()
                        self._open.wait()
                    pair[s].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def hold_replies(self) -> None:
        """From now on, hold every reply to a client (invalidation subscribers excepted) until release()."""
        self.holding.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.set()
        self._stop.set()
        self._listener.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(2)
