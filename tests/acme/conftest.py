"""Fixtures shared by the ACME suites: a throw-away CA for pebble's HTTPS listener,
one pebble-challtestsrv per module answering DNS with 127.0.0.1, a factory of
pebble instances (each test points its pebble's HTTP-01 port where it needs) and
one of validation gates."""
import itertools

import pytest

from acme_env import ChallTestSrv, Pebble, ValidationGate, make_tls_ca
from factory import made_until_teardown  # tests/lib, put on the path by acme_env


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory):
    """A throw-away CA and a localhost certificate for pebble's HTTPS listener."""
    return make_tls_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    srv = ChallTestSrv(tmp_path_factory.mktemp("dns"))
    yield srv.port
    srv.stop()


@pytest.fixture
def pebble_factory(tmp_path, tls_ca, dns):
    """Factory: pebble_factory(http_port, validity=None) starts a pebble in a directory of
    its own; all are stopped at teardown."""
    n = itertools.count()

    def start(http_port, validity=None):
        d = tmp_path / f"pebble{next(n)}"
        d.mkdir()
        return Pebble(d, tls_ca, dns, http_port, validity)

    yield from made_until_teardown(start, Pebble.stop)


@pytest.fixture
def validation_gate():
    """Factory: validation_gate(port) starts a ValidationGate in front of port; all are
    closed at teardown."""
    yield from made_until_teardown(ValidationGate, ValidationGate.close)
