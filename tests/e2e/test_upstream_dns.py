"""A server name resolving to several addresses (a headless Service's pods): every address is a
balancing member, and re-resolution adds and retires addresses without failing requests.

DNS is simulated with /etc/hosts: the gateway runs in a private mount namespace where a file of
the test's is bound over /etc/hosts (glibc reads it on every lookup). The file is rewritten in
place (truncated and written, never renamed) to change the answers; pods are upstreams listening
on 127.0.0.2, 127.0.0.3, ... on one port."""

import os
import shutil
import subprocess
import threading
import time

import pytest

from helpers import Gateway, SteadyLoad, free_port, make_config, wait_for

NAME = "pods.test"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"),
    reason="needs root and unshare(1) for a private /etc/hosts")


class HostsGateway(Gateway):
    """The gateway in its own mount namespace, with hosts_path bound over /etc/hosts."""

    def __init__(self, binary, tmp_path, config, hosts_path, name="gw"):
        super().__init__(binary, tmp_path, config, name=name)
        self.hosts_path = hosts_path

    def start(self):
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        script = 'mount --bind "$0" /etc/hosts && exec "$1" -c "$2"'
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--", "sh", "-c", script, self.hosts_path, self.binary,
             self.path],
            stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL, cwd=self.dir,
            start_new_session=True)
        self.pid = self.proc.pid


@pytest.fixture
def hosts(tmp_path):
    """hosts(["127.0.0.2", ...]) makes NAME resolve to these addresses (in place)."""
    path = str(tmp_path / "hosts")

    def write(ips):
        text = "127.0.0.1 localhost\n" + "".join("%s %s\n" % (ip, NAME) for ip in ips)
        with open(path, "w") as f:  # truncates: the bind mount keeps pointing at this inode
            f.write(text)

    write([])
    write.path = path
    return write


@pytest.fixture
def pods_gateway(switchyard_bin, tmp_path, hosts):
    started = []

    def make(port, **pool):
        h, a = free_port(), free_port()
        spec = {"servers": ["%s:%d" % (NAME, port)], "resolve_interval": "1s"}
        spec.update(pool)
        cfg = make_config(h, a, {"pods": spec}, [{"hosts": ["*"], "upstream": "pods"}],
                          workers=2)
        gw = HostsGateway(switchyard_bin, tmp_path, cfg, hosts.path, name="gw%d" % len(started))
        started.append(gw)
        gw.start()
        gw.wait_ready()
        return gw

    yield make
    for gw in started:
        gw.terminate()
        print("---- %s stderr (tail) ----\n%s" % (gw.name, gw.stderr_text()[-4000:]))


def started_after(up, t):
    with up.lock:
        return sum(1 for r in up.started if r["time"] >= t)


def address_up(gw, ip, port):
    return gw.metric("switchyard_upstream_server_up", upstream="pods",
                     server="%s:%d" % (NAME, port), address="%s:%d" % (ip, port))


def test_pods_behind_one_name_are_added_and_retired_under_load(pods_gateway, hosts, upstream):
    port = free_port()
    pods = {ip: upstream("pod-" + ip, host=ip, port=port) for ip in ("127.0.0.2", "127.0.0.3")}
    hosts(["127.0.0.2", "127.0.0.3"])
    gw = pods_gateway(port)
    with SteadyLoad(gw) as load:
        t0 = time.monotonic()
        wait_for(lambda: all(started_after(p, t0) >= 20 for p in pods.values()), 10, 0.05,
                 "both addresses to get requests")

        # a pod is added: it gets requests within one resolve_interval (plus the test's margin)
        pods["127.0.0.4"] = upstream("pod-127.0.0.4", host="127.0.0.4", port=port)
        t_add = time.monotonic()
        hosts(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
        wait_for(lambda: started_after(pods["127.0.0.4"], t_add) >= 1, 5, 0.02,
                 "the new address to get requests")
        added_after = min(r["time"] for r in pods["127.0.0.4"].started) - t_add
        wait_for(lambda: started_after(pods["127.0.0.4"], t_add) >= 20, 5, 0.05,
                 "the new address to get its share")

        # slow requests on every pod, then one pod leaves DNS: what runs on it finishes
        slow = []
        threads = [threading.Thread(target=lambda: slow.append(
            gw.get("/slow?ms=2500", host="x.test", timeout=20))) for _ in range(8)]
        for t in threads:
            t.start()
        gone = pods["127.0.0.2"]
        wait_for(lambda: any(r["path"] == "/slow" for r in gone.started), 5, 0.02,
                 "a slow request on the pod that leaves")
        t_rm = time.monotonic()
        hosts(["127.0.0.3", "127.0.0.4"])
        # one resolve_interval, plus margin for a busy machine
        time.sleep(2.5)
        late = started_after(gone, t_rm + 2.0)
        time.sleep(1.5)
        late += started_after(gone, t_rm + 2.5)
        for t in threads:
            t.join(20)
        others = sum(started_after(pods[ip], t_rm + 2.0) for ip in ("127.0.0.3", "127.0.0.4"))
        with gone.lock:
            open_conns = len(gone.socks)
    print("new address served %.3fs after the hosts change; after the removal the gone "
          "address got %d request(s), the others %d" % (added_after, late, others))
    assert load.failures() == [], load.failures()[:5]
    assert added_after < 2.0, added_after
    assert late == 0
    assert others >= 50, others
    assert len(slow) == 8 and all(r.status == 200 for r in slow), slow
    # its pooled connections were closed once the requests on them ended
    assert open_conns == 0, open_conns
    assert address_up(gw, "127.0.0.3", port) == 1
    assert address_up(gw, "127.0.0.4", port) == 1
    assert address_up(gw, "127.0.0.2", port) is None  # no longer exported


def test_each_address_has_its_own_health(pods_gateway, hosts, upstream):
    port = free_port()
    live = upstream("live", host="127.0.0.3", port=port)
    hosts(["127.0.0.2", "127.0.0.3"])  # nothing listens on 127.0.0.2
    gw = pods_gateway(port, balance="round_robin")
    for i in range(20):
        r = gw.get("/h%d" % i, host="x.test")
        assert r.status == 200 and r.header("X-Upstream") == "live", (i, r)
    assert address_up(gw, "127.0.0.2", port) == 0
    assert address_up(gw, "127.0.0.3", port) == 1
    refused = gw.metric("switchyard_upstream_errors_total", upstream="pods",
                        reason="connect_refused")
    assert 1 <= refused <= 8, refused  # backed off, not tried on every request
    # the dead address comes up: it is let back in
    back = upstream("back", host="127.0.0.2", port=port)
    wait_for(lambda: gw.get("/b", host="x.test").header("X-Upstream") == "back", 5, 0.05,
             "the address that came up to get requests")
    assert back.requests


def test_more_addresses_than_the_limit_are_logged_and_capped(pods_gateway, hosts, upstream):
    port = free_port()
    ips = ["127.0.%d.%d" % (1 + i // 250, 2 + i % 250) for i in range(300)]
    hosts(ips)
    live = upstream("lowest", host=ips[0], port=port)
    gw = pods_gateway(port, balance="round_robin")
    wait_for(lambda: "only the first 256 are used" in gw.stderr_text(), 5, 0.05,
             "the warning about the limit")
    members = [l for (n, l, v) in gw.metrics() if n == "switchyard_upstream_server_up"]
    assert len(members) == 256, len(members)
    assert any(l["address"] == live.addr for l in members)
    # the one that answers is found (each request tries up to 64 addresses, the dead ones are
    # backed off as they fail)
    wait_for(lambda: gw.get("/", host="x.test", timeout=20).status == 200, 10, 0.05,
             "a request to reach the address that answers")
