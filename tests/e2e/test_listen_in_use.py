"""A listening address that another process holds, and one a killed gateway is still releasing.

Under io_uring the kernel tears a killed process's ring down after the process is gone: its
listening sockets (held by the ring's accept requests) close a few milliseconds after `wait()`
returns. A gateway started at once on the same addresses waits for them (up to 2 s) instead of
failing with "address already in use"; an address that stays taken still fails the start."""

import os
import signal
import socket
import subprocess
import time

from helpers import free_port, make_config, to_yaml, wait_for


def start(binary, cfg_path, err_path):
    with open(err_path, "ab") as f:
        return subprocess.Popen([binary, "-c", str(cfg_path)], stdout=subprocess.DEVNULL, stderr=f)


def served(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                return data
            data += d
    finally:
        s.close()


def test_restart_right_after_sigkill_waits_for_the_addresses(switchyard_bin, upstream, tmp_path):
    up = upstream("one")
    hp, ap = free_port(), free_port()
    cfg = tmp_path / "sy.yaml"
    cfg.write_text(to_yaml(make_config(hp, ap, {"one": [up.addr]},
                                       [{"hosts": ["plain.test"], "upstream": "one"}], workers=2)))
    err = tmp_path / "err.log"
    for round_ in range(5):
        p = start(switchyard_bin, cfg, err)
        try:
            wait_for(lambda: err.read_text().count(" serving ") == round_ + 1, 5, 0.01,
                     "start %d: %s" % (round_, err.read_text()[-2000:]))
            assert served(hp).startswith(b"HTTP/1.1 200"), round_
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
    assert "address already in use" not in err.read_text(), err.read_text()[-3000:]


def test_an_address_held_by_another_process_fails_the_start(switchyard_bin, upstream, tmp_path):
    up = upstream("one")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    hp = holder.getsockname()[1]
    try:
        cfg = tmp_path / "sy.yaml"
        cfg.write_text(to_yaml(make_config(hp, free_port(), {"one": [up.addr]},
                                           [{"hosts": ["plain.test"], "upstream": "one"}])))
        t0 = time.monotonic()
        p = subprocess.run([switchyard_bin, "-c", str(cfg)], capture_output=True, text=True, timeout=20,
                           env=dict(os.environ))
        assert p.returncode != 0, p
        assert "127.0.0.1:%d: address already in use" % hp in p.stderr, p.stderr
        assert "waiting up to 2000 ms for it to be released" in p.stderr, p.stderr
        assert time.monotonic() - t0 >= 1.5  # it waited before giving up
    finally:
        holder.close()
