"""TCP relays for the test suites: splice() copies bytes both ways between two sockets, and
Forwarder stands for a load balancer or a Kubernetes Service: a public port whose
connections go round-robin to a list of backends, bytes untouched."""
import itertools
import socket
import threading


def splice(client, upstream):
    """Copies bytes both ways until either side closes, then shuts both down. Blocks until
    the client's direction ends; the other direction runs in a thread."""
    def pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
    pipe(client, upstream)


class Forwarder:
    """Listens on (host, port) (port 0: any free one, see .port) and hands each connection
    to the next backend (host, port) in turn; a backend that refuses is skipped."""

    def __init__(self, backends, host="127.0.0.1", port=0):
        self.backends = list(backends)
        self.turn = itertools.count()
        self.connections = 0
        self.sock = socket.create_server((host, port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.done = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.done = True
        self.sock.close()

    def _accept(self):
        while not self.done:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._relay, args=(c,), daemon=True).start()

    def _relay(self, c):
        c.settimeout(None)
        for _ in self.backends:
            backend = self.backends[next(self.turn) % len(self.backends)]
            try:
                u = socket.create_connection(backend, timeout=10)
            except OSError:
                continue
            u.settimeout(None)
            splice(c, u)
            c.close()
            u.close()
            return
        c.close()
