"""Regression: a log reader that stops reading never freezes the gateway.

stdout (access log) or stderr (error log) is a pipe whose reader the test pauses, as a container
runtime's log shim does when the node's disk is slow. The gateway used to write to them with
blocking write(2) from its workers: once the pipe was full a few hundred requests were answered,
then none, /healthz included, and the liveness probe killed the pod.

Each test measures the request rate with the reader active, then with it paused, and requires
that the rate does not collapse, that /healthz answers within a second throughout, that the
lines that did not fit are counted, and that after the reader resumes the queued lines and new
ones arrive, each one complete. Every step is bounded in time, also against a gateway that hangs.
"""

import json
import os
import re
import select
import signal
import subprocess
import threading
import time

from helpers import dead_port, free_port, make_config, wait_for

LOAD_SECONDS = 3
# An access log line of about 1.6 KiB: the rings and the pipe fill after a few hundred requests.
PAD = "p" * 1400
LINE_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(error|warn|info|debug)\] ")


class PipeReader:
    """Reads one of the gateway's pipes on a thread; pause() stops reading (the pipe fills)."""

    def __init__(self, f):
        self.fd = f.fileno()
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.reading = threading.Event()
        self.reading.set()
        self.eof = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.eof:
            if not self.reading.wait(0.1):
                continue
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if not r or not self.reading.is_set():
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
                break
            with self.lock:
                self.buf += chunk

    def pause(self):
        self.reading.clear()
        time.sleep(0.3)  # a read in progress finishes

    def resume(self):
        self.reading.set()

    def data(self):
        with self.lock:
            return bytes(self.buf)

    def wait_quiet(self, quiet=0.5, timeout=15.0):
        """Waits until nothing new arrived for `quiet` seconds."""
        def still():
            n = len(self.data())
            time.sleep(quiet)
            return len(self.data()) == n
        wait_for(still, timeout, 0, "the gateway's output to settle")


def run_wrk(port, path, seconds=LOAD_SECONDS, conns=8):
    """Keep-alive load; returns the number of answered requests. Bounded even when the
    gateway answers nothing (wrk stops after `seconds`, its requests time out after 2 s)."""
    out = subprocess.run(["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "2s",
                          "-H", "Host: plain.test", "http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, text=True, timeout=seconds + 30)
    assert out.returncode == 0, out.stderr
    m = re.search(r"(\d+) requests in", out.stdout)
    assert m, out.stdout
    return int(m.group(1)), out.stdout[out.stdout.index("\n") + 1:]  # without the long URL


class HealthProbe:
    """Asks /healthz every 250 ms on its own thread; records the answers and their delays."""

    def __init__(self, gw):
        self.gw = gw
        self.results = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                status = self.gw.admin("/healthz", timeout=1.0).status
            except Exception as e:  # timeout, reset: the probe failed
                status = repr(e)
            self.results.append((status, time.monotonic() - t0))
            self.stop.wait(0.25)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


def load_with_paused_reader(gw, reader, path_before, path_during, counter):
    """Measures the rate with the reader active, then paused. Returns the requests answered
    while paused and the value of `counter` (a drop counter) before the pause."""
    run_wrk(gw.http_port, path_before, seconds=1)  # warm-up: pools, buffers
    before, text_before = run_wrk(gw.http_port, path_before)
    reader.wait_quiet()
    dropped0 = gw.metric(counter) or 0
    reader.pause()
    with HealthProbe(gw) as probe:
        during, text_during = run_wrk(gw.http_port, path_during)
    print("requests in %d s: %d with the reader active, %d with it paused" % (
        LOAD_SECONDS, before, during))
    assert during >= 2000, text_during
    assert during >= 0.3 * before, (before, during, text_during)
    assert len(probe.results) >= 4, probe.results
    bad = [r for r in probe.results if r[0] != 200 or r[1] >= 1.0]
    assert not bad, "slow or failed /healthz while the reader was paused: %r" % bad
    assert (gw.metric(counter) or 0) > dropped0, "nothing counted in %s" % counter
    return during, dropped0


def complete_lines(data):
    assert data.endswith(b"\n"), data[-300:]
    return data.decode("utf-8").split("\n")[:-1]


def test_paused_stdout_reader_does_not_stop_requests(gateway, upstream):
    up = upstream("plain")
    hp, ap = free_port(), free_port()
    gw = gateway(make_config(hp, ap, upstreams={"plain": [up.addr]},
                             sites=[{"hosts": ["plain.test"], "upstream": "plain"}],
                             workers=2, log={"access": True, "level": "info"}),
                 pipes=("stdout",))
    reader = PipeReader(gw.proc.stdout)
    try:
        during, dropped0 = load_with_paused_reader(gw, reader, "/a?" + PAD, "/b?" + PAD,
                                                  "switchyard_access_log_dropped_total")
        wait_for(lambda: re.search(r"access log: \d+ lines dropped, stdout not keeping up",
                                   gw.stderr_text()), 5, what="the drop report on stderr")
    finally:
        reader.resume()
    # The queued lines come out first, then new ones.
    reader.wait_quiet()
    for i in range(20):
        assert gw.get("/c/%d" % i).status == 200
    wait_for(lambda: reader.data().count(b'"/c/') >= 20, 5, what="lines after the reader resumed")
    entries = [json.loads(line) for line in complete_lines(reader.data())]
    phases = [e["path"][1] for e in entries]
    assert "".join(phases) == "".join(sorted(phases)), "lines out of order"
    nb = phases.count("b")
    assert nb > 0, "no line queued during the pause was written after it"
    # Every request of the paused phase was either written or counted as dropped (the last
    # ones were still in the worker's staging buffer when the load stopped: read the counter now).
    dropped = gw.metric("switchyard_access_log_dropped_total") - dropped0
    assert during <= nb + dropped <= during + 200, (during, nb, dropped)


def test_paused_stderr_reader_does_not_stop_requests(gateway):
    # Every request to a dead upstream logs a warning: the error log is as busy as requests.
    hp, ap = free_port(), free_port()
    gw = gateway(make_config(hp, ap, upstreams={"dead": ["127.0.0.1:%d" % dead_port()]},
                             sites=[{"hosts": ["plain.test"], "upstream": "dead"}],
                             workers=2, log={"access": False, "level": "warn"}),
                 pipes=("stderr",))
    reader = PipeReader(gw.proc.stderr)
    try:
        load_with_paused_reader(gw, reader, "/a", "/b", "switchyard_error_log_dropped_total")
    finally:
        reader.resume()
    wait_for(lambda: re.search(rb"error log: \d+ lines dropped, stderr not keeping up",
                               reader.data()), 5, what="the drop report after the reader resumed")
    reader.wait_quiet()
    warnings = reader.data().count(b"(request ")
    assert gw.get("/after").status == 502
    wait_for(lambda: reader.data().count(b"(request ") > warnings, 5,
             what="a warning logged after the reader resumed")
    lines = complete_lines(reader.data())
    assert len(lines) > 100, lines[-5:]
    bad = [line for line in lines if not LINE_TS.match(line)]
    assert not bad, bad[:5]
    # stderr is not the fixture's file here: look for sanitizer reports in the pipe.
    assert not re.search(rb"AddressSanitizer|LeakSanitizer|runtime error:", reader.data())


def test_exit_with_a_paused_stdout_reader_is_bounded(gateway, upstream):
    up = upstream("plain")
    hp, ap = free_port(), free_port()
    gw = gateway(make_config(hp, ap, upstreams={"plain": [up.addr]},
                             sites=[{"hosts": ["plain.test"], "upstream": "plain"}],
                             workers=2, timeouts={"drain": "1s"},
                             log={"access": True, "level": "info"}),
                 pipes=("stdout",))
    reader = PipeReader(gw.proc.stdout)
    reader.pause()
    run_wrk(gw.http_port, "/a?" + PAD, seconds=1)
    wait_for(lambda: gw.metric("switchyard_access_log_dropped_total"), 5,
             what="the pipe and the rings to fill")
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    try:
        code = gw.proc.wait(15)
    finally:
        reader.resume()
    print("exited %.2f s after SIGTERM with the stdout reader paused" % (time.monotonic() - t0))
    assert code == 0, gw.stderr_text()[-2000:]
    reader.thread.join(10)
    assert reader.eof
    for line in complete_lines(reader.data()):
        json.loads(line)
