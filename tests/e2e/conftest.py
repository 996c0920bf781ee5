"""Shared fixtures for the black-box suite.

Every test starts the real gateway binary (SWITCHYARD_BIN, default
build/switchyard) against real upstream processes on 127.0.0.1 and stops
everything it started. Nothing here needs more than the Debian packages
python3-pytest and python3-websockets.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import (  # noqa: E402
    Gateway,
    Upstream,
    WsUpstream,
    free_port,
)
from factory import made_until_teardown  # noqa: E402  (tests/lib, put on the path by helpers)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _binary():
    path = os.environ.get("SWITCHYARD_BIN") or os.path.join(REPO, "build", "switchyard")
    return os.path.abspath(path)


@pytest.fixture(scope="session")
def switchyard_bin():
    path = _binary()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            "gateway binary not found or not executable: %s "
            "(build it with `make`, or set SWITCHYARD_BIN)" % path,
            pytrace=False,
        )
    return path


def _servers(cls, default_name):
    """Body of a factory fixture: make(name, **kw) starts a cls(name, **kw); all are
    stopped at teardown."""
    def start(name=default_name, **kw):
        u = cls(name, **kw)
        u.start()
        return u

    yield from made_until_teardown(start, cls.stop)


@pytest.fixture
def upstream():
    """Factory: upstream("4.1.0") starts a raw-socket HTTP/1.1 upstream."""
    yield from _servers(Upstream, "up")


@pytest.fixture
def ws_upstream():
    """Factory: ws_upstream("4.1.0") starts a websockets echo server."""
    yield from _servers(WsUpstream, "ws")


@pytest.fixture
def gateway(switchyard_bin, tmp_path):
    """Factory: gateway(config) writes the config (dict or YAML text), starts the
    binary and waits until it is ready. All gateways are stopped at teardown;
    the tail of their logs is printed (pytest shows it when a test fails), and a
    sanitizer report on stderr fails the test."""
    started = []

    def make(config, wait_ready=True, name=None, env=None, pipes=()):
        idx = len(started)
        gw = Gateway(switchyard_bin, tmp_path, config, name=name or "gw%d" % idx, env=env,
                     pipes=pipes)
        started.append(gw)
        gw.start()
        if wait_ready:
            gw.wait_ready()
        return gw

    yield make
    problems = []
    for gw in started:
        gw.terminate()
        err = gw.stderr_text()
        print("---- %s stderr (tail) ----\n%s" % (gw.name, err[-4000:]))
        print("---- %s stdout (tail) ----\n%s" % (gw.name, gw.stdout_text()[-2000:]))
        if re.search(r"AddressSanitizer|LeakSanitizer|runtime error:|ThreadSanitizer", err):
            problems.append("%s: sanitizer report on stderr" % gw.name)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def ports():
    """Two fresh ports for the gateway: (http, admin)."""
    return free_port(), free_port()


class Retro:
    """The usual layout: a version site (three versions) and two plain sites."""

    def __init__(self, gw, ups):
        self.gw = gw
        self.ups = ups          # {"4.1.0": Upstream, "4.2.0": ..., "4.3.0": ..., "plain": ...}

    def __getattr__(self, name):
        return getattr(self.gw, name)


def retro_config(ups, http_port, admin_port, default="4.2.0", **kw):
    from helpers import make_config, version_block
    return make_config(
        http_port, admin_port,
        upstreams={"v1": [ups["4.1.0"].addr], "v2": [ups["4.2.0"].addr],
                   "v3": [ups["4.3.0"].addr], "plain": [ups["plain"].addr]},
        sites=[
            {"hosts": ["retro.example.org", "*.example.org"],
             "version": version_block({"4.1.0": "v1", "4.2.0": "v2", "4.3.0": "v3"}, default)},
            {"hosts": ["plain.test"], "upstream": "plain"},
            {"hosts": ["exact.example.org"], "upstream": "plain"},
        ],
        **kw)


@pytest.fixture
def start_retro(gateway, upstream):
    """start_retro(**make_config kwargs) -> Retro with a running gateway."""

    def start(**kw):
        ups = {n: upstream(n) for n in ("4.1.0", "4.2.0", "4.3.0", "plain")}
        http_port, admin_port = free_port(), free_port()
        gw = gateway(retro_config(ups, http_port, admin_port, **kw))
        r = Retro(gw, ups)
        r.config = lambda **kw2: retro_config(ups, http_port, admin_port, **kw2)
        return r

    return start


@pytest.fixture
def retro(start_retro):
    return start_retro()
