"""Free TCP ports on 127.0.0.1 for the test suites (tests/e2e, tests/acme)."""
import socket

_handed_out = set()


def free_port():
    """A port free on 127.0.0.1 now, never handed out before in this run: the kernel may
    give the same ephemeral port to two bind(0) calls in a row once the first is closed,
    and a test asking for several ports at once needs them distinct."""
    for _ in range(1000):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no fresh free port after 1000 tries")
