"""The configuration deploy/ ships, run end to end as a user meets it.

The ConfigMap's switchyard.yaml is taken from `kubectl kustomize deploy/k8s/base/switchyard`
and changed only where the cluster cannot exist here (journey.adapt): listeners on each
replica's pod address with the shipped ports, pebble as the ACME directory. Two replicas
share one ACME storage directory, as the Deployment's pods share the Azure Files volume.
TCP forwarders play the LoadBalancer Service (public 80 -> 8080, 443 -> 8443, round-robin
over the replicas), and pebble validates HTTP-01 on the public port 80. The shipped upstream
names resolve, through a private /etc/hosts, to two pods per version on the shipped port.

The client only ever names retro.example.org on the public ports (curl --connect-to maps
them to the forwarders): a redirect to any other port has nowhere to go.

With SWITCHYARD_IMAGE=<image>, the replicas are that container image run as the Deployment
runs it (deploy/image-test.sh); otherwise build/switchyard. Needs root (mount namespaces,
podman), pebble and pebble-challtestsrv.
"""
import asyncio
import json
import os
import re
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml

from acme_env import CA_READY, wait_until
from forwarder import Forwarder  # tests/lib, put on the path by acme_env
from journey import (IN_POD_CA, IN_POD_STORAGE, ImageReplica, NativeReplica, PostfactoPod,
                     adapt, hosts_file, pod_network, shipped_config, upstream_pods,
                     wait_issued)

TOP = Path(__file__).resolve().parent.parent.parent
BINARY = Path(os.environ.get("SWITCHYARD_BIN", TOP / "build" / "switchyard"))
IMAGE = os.environ.get("SWITCHYARD_IMAGE")
HOST = "retro.example.org"

pytestmark = [
    pytest.mark.skipif(not CA_READY, reason="pebble or pebble-challtestsrv not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces, podman)"),
]


@pytest.fixture
def deployment(tmp_path, pebble_factory):
    """Builds the pieces; yields a dict the test drives. Everything stops at teardown."""
    shipped = shipped_config()
    cfg = yaml.safe_load(shipped)
    assert cfg["sites"][0]["hosts"] == [HOST] and cfg["tls"]["acme"]["domains"] == [HOST]
    ports = {k: int(v.rsplit(":", 1)[1]) for k, v in cfg["listen"].items()}
    net = pod_network()
    gw_ips = [f"{net}.{10 + i}" for i in range(3)]         # replica 3 joins later

    pods, names = [], {}
    for i, (version, (name, port)) in enumerate(sorted(upstream_pods(shipped).items())):
        ips = [f"{net}.{20 + 10 * i + k}" for k in range(2)]
        pods += [PostfactoPod(version, ip, port) for ip in ips]
        names[name] = ips
    hosts = hosts_file(tmp_path / "hosts", names)

    # The Service: public ports on 127.0.0.1, round-robin over the first two replicas.
    svc_http = Forwarder([(ip, ports["http"]) for ip in gw_ips[:2]])
    svc_https = Forwarder([(ip, ports["https"]) for ip in gw_ips[:2]])
    pebble = pebble_factory(svc_http.port)
    storage = tmp_path / "acme-volume"
    replicas = []

    def replica(i):
        name = f"switchyard-{i}"
        if IMAGE:
            text = adapt(shipped, gw_ips[i], pebble.directory, IN_POD_CA, IN_POD_STORAGE)
            r = ImageReplica(name, gw_ips[i], ports, tmp_path, IMAGE, text, hosts, storage,
                             pebble.ca)
        else:
            text = adapt(shipped, gw_ips[i], pebble.directory, pebble.ca, storage)
            r = NativeReplica(name, gw_ips[i], ports, tmp_path, BINARY, text, hosts, storage)
        replicas.append(r)
        return r

    curl_base = ["curl", "-sS", "--max-time", "20", "--cacert", str(tmp_path / "root.pem"),
                 "--connect-to", f"{HOST}:80:127.0.0.1:{svc_http.port}",
                 "--connect-to", f"{HOST}:443:127.0.0.1:{svc_https.port}"]

    def curl(url, *args):
        """(status, headers lower-cased -> [values], body, effective URL) of one curl run."""
        head, body = tmp_path / "curl.head", tmp_path / "curl.body"
        p = subprocess.run(curl_base + ["-D", str(head), "-o", str(body),
                                        "-w", "%{url_effective}", *args, url],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, (url, p.stderr)
        last = head.read_bytes().decode().strip().split("\r\n\r\n")[-1].split("\r\n")
        headers = {}
        for line in last[1:]:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        return int(last[0].split()[1]), headers, body.read_text(), p.stdout

    d = {"config": cfg, "replica": replica, "replicas": replicas, "pods": pods, "pebble": pebble,
         "svc_http": svc_http, "svc_https": svc_https, "ports": ports, "curl": curl,
         "tmp": tmp_path, "storage": storage}
    try:
        yield d
    finally:
        for r in replicas:
            r.kill()
        for x in (svc_http, svc_https):
            x.close()
        for p in pods:
            p.stop()


async def _ws(port, ca, cookie):
    import websockets
    ctx = ssl.create_default_context(cafile=ca)
    headers = [("Cookie", cookie)] if cookie else []
    async with websockets.connect(f"wss://{HOST}/cable", host="127.0.0.1", port=port,
                                  ssl=ctx, server_hostname=HOST, origin=f"https://{HOST}",
                                  extra_headers=headers) as ws:
        await ws.send("hello")
        return await asyncio.wait_for(ws.recv(), 10)


def websocket(port, ca, cookie=None):
    return asyncio.run(_ws(port, ca, cookie))


def podman_allows_io_uring():
    """Whether podman's default seccomp profile (which refuses every call it does not name)
    names io_uring_setup among the allowed calls."""
    info = json.loads(subprocess.run(["podman", "info", "--format", "json"], capture_output=True,
                                     text=True, check=True).stdout)
    path = info["host"]["security"].get("seccompProfilePath") or "/usr/share/containers/seccomp.json"
    with open(path) as f:
        prof = json.load(f)
    return any("io_uring_setup" in r.get("names", []) and r.get("action") == "SCMP_ACT_ALLOW"
               for r in prof.get("syscalls", []))


def test_a_user_journey_through_the_shipped_configuration(deployment):
    d = deployment
    curl, pebble, ports = d["curl"], d["pebble"], d["ports"]
    a, b = d["replica"](0), d["replica"](1)
    a.wait_ready()
    b.wait_ready()

    # 0. The shipped configuration leaves io_backend to auto: in the image, under the runtime's
    # default seccomp profile, the gateway takes what the profile allows and says why.
    if IMAGE:
        text = a.log_path.read_text()
        start = [l for l in text.splitlines() if "main: switchyard " in l and " serving " in l]
        assert start, text[-3000:]
        if podman_allows_io_uring():
            assert start[0].endswith(", io_uring"), start[0]
        else:
            assert start[0].endswith(", epoll"), start[0]
            assert "io_uring is not available here" in text, text[-3000:]

    # 1. http:// is redirected to https:// on the public port: no port in the URL.
    for _ in range(4):     # round-robin: both replicas answer
        status, headers, _, _ = curl(f"http://{HOST}/retros/1?x=1")
        assert status == 308, headers
        assert headers["location"] == [f"https://{HOST}/retros/1?x=1"], headers
    assert d["svc_http"].connections >= 4

    # 2. The certificate comes by HTTP-01 on the plain listener behind public port 80, and
    # both replicas serve it (one ordered under the storage lock, the other loaded it).
    root = pebble.root()
    (d["tmp"] / "root.pem").write_text(root)
    served = wait_issued([a, b], root, HOST)
    assert served[a.name] == served[b.name], "the replicas serve different certificates"
    assert pebble.validations_on(d["svc_http"].port) >= 1, pebble.logtext()[-3000:]
    orders = pebble.orders()
    assert orders == 1, f"{orders} orders: one replica orders, under the lock in the storage"
    if IMAGE:   # written by the image's unprivileged user into the volume
        assert {p.stat().st_uid for p in d["storage"].rglob("*")} == {65532}

    # 3. The page, by following the redirect like a browser: the default version.
    status, headers, body, url = curl(f"http://{HOST}/", "-L", "--max-redirs", "2")
    assert (status, url) == (200, f"https://{HOST}/"), (status, url, headers)
    assert headers["x-postfacto-version"] == ["4.2.0"], headers
    assert headers["strict-transport-security"] == [d["config"]["tls"]["hsts"]], headers
    assert "set-cookie" not in headers, headers
    seen = json.loads(body)
    assert seen["version"] == "4.2.0"
    # what the application sees: the public host, https, no internal port anywhere
    assert seen["headers"]["host"] == HOST, seen
    assert seen["headers"]["x-forwarded-proto"] == "https", seen
    assert seen["headers"]["x-forwarded-host"] == HOST, seen
    assert "x-forwarded-port" not in seen["headers"], seen
    assert not re.search(r":(%d|%d)\b" % (ports["http"], ports["https"]), json.dumps(seen))

    # 4. ?postfacto_version=4.1.0 answers from 4.1.0 and pins it with a secure cookie.
    jar = str(d["tmp"] / "cookies")
    status, headers, body, _ = curl(f"https://{HOST}/?postfacto_version=4.1.0", "-c", jar)
    assert status == 200 and json.loads(body)["version"] == "4.1.0", headers
    [cookie] = headers["set-cookie"]
    assert cookie.startswith("postfacto_version=4.1.0;") and "Secure" in cookie, cookie
    for path in ("/retros/7", "/api/retros"):
        status, headers, body, _ = curl(f"https://{HOST}{path}", "-b", jar)
        assert json.loads(body)["version"] == "4.1.0" and headers["x-postfacto-version"] == ["4.1.0"]

    # 5. The WebSocket (no custom header possible) lands on the pinned version.
    pins = {websocket(d["svc_https"].port, str(d["tmp"] / "root.pem"),
                      "postfacto_version=4.1.0") for _ in range(4)}
    assert all(p.startswith("4.1.0@") and p.endswith(": hello") for p in pins), pins
    assert websocket(d["svc_https"].port, str(d["tmp"] / "root.pem")).startswith("4.2.0@")
    cable = [r for p in d["pods"] for r in p.requests if r["target"] == "/cable"]
    assert all(r["headers"]["origin"] == f"https://{HOST}" and r["headers"]["host"] == HOST
               for r in cable), cable

    # 6. Each version's name has two addresses (as a headless Service's pods): both serve.
    def both_pods_answered():
        for _ in range(4):
            curl(f"https://{HOST}/spread", "-H", "Connection: close")
        return all(any(r["target"] == "/spread" for r in p.requests)
                   for p in d["pods"] if p.version == "4.2.0")
    wait_until(both_pods_answered, 30, "one 4.2.0 pod got every request")

    # 7. A replica that joins later (scale-up, rolling update) serves the stored
    # certificate without a new order.
    c = d["replica"](2)
    c.wait_ready()
    assert wait_issued([c], root, HOST)[c.name] == served[a.name]
    assert pebble.orders() == orders, "the new replica ordered again"

    # 8. SIGTERM, as at a rollout: every replica drains and exits 0.
    for r in (a, b, c):
        rc, log = r.stop()
        assert rc == 0, (r.name, rc, log[-1500:])
