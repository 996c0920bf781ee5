"""The README's quick start: scripts/demo.sh serves the local example with both versions."""
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PORTS = (3001, 3002, 8080, 9901)


def port_busy(port):
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def get(path, headers=None):
    req = urllib.request.Request("http://127.0.0.1:8080" + path, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, dict(r.getheaders()), r.read().decode()


def test_demo_routes_both_versions(switchyard_bin):
    busy = [p for p in PORTS if port_busy(p)]
    if busy:
        pytest.fail("the demo needs 127.0.0.1 ports %s free; busy: %s" % (PORTS, busy))
    env = dict(os.environ, SWITCHYARD_BIN=switchyard_bin, PYTHON="/usr/bin/python3")
    p = subprocess.Popen(["sh", os.path.join(REPO, "scripts", "demo.sh")], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        deadline = time.time() + 15
        while not port_busy(8080) or not port_busy(9901):
            assert p.poll() is None, p.stdout.read().decode(errors="replace")
            assert time.time() < deadline, "the demo did not start listening"
            time.sleep(0.1)
        status, hdrs, body = get("/", {"X-Postfacto-Version": "4.1.0"})
        assert status == 200 and "4.1.0" in body, body
        assert hdrs.get("X-Postfacto-Version") == "4.1.0"
        status, hdrs, body = get("/")
        assert status == 200 and "4.2.0" in body and hdrs.get("X-Postfacto-Version") == "4.2.0"
        status, hdrs, body = get("/?postfacto_version=4.1.0")
        assert "4.1.0" in body and "postfacto_version=4.1.0" in hdrs.get("Set-Cookie", "")
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    deadline = time.time() + 5
    while any(port_busy(x) for x in PORTS) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(port_busy(x) for x in PORTS), "the demo left something listening"
