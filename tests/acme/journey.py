"""The shipped deployment, run here: the ConfigMap's switchyard.yaml as kustomize renders it,
gateway replicas on their own "pod" addresses with the shipped ports, the Service's port
mapping (80 -> 8080, 443 -> 8443) as TCP forwarders, Postfacto pods answering as 4.1.0 and
4.2.0 behind the shipped upstream names (several addresses each, from a private /etc/hosts),
and pebble as the ACME server.

A replica runs either the built binary inside a private mount namespace whose /etc/hosts is
the test's (NativeReplica), or the container image the way the Deployment runs it
(ImageReplica: non-root 65532, read-only root file system, /tmp and the ACME volume the only
writable paths, every capability dropped)."""
import base64
import hashlib
import json
import os
import random
import signal
import socket
import socketserver
import ssl
import subprocess
import threading
import urllib.request

import yaml

from acme_env import wait_until

TOP = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BASE = os.path.join(TOP, "deploy", "k8s", "base", "switchyard")
CONFIG_NAME = "switchyard.yaml"
IN_POD_CONFIG = "/etc/switchyard/switchyard.yaml"     # the Deployment's configMap mount
IN_POD_STORAGE = "/var/lib/switchyard"                # the Deployment's ACME volume mount
IN_POD_CA = "/etc/switchyard/acme-ca.pem"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---------------------------------------------------------------- the shipped configuration

def shipped_config():
    """switchyard.yaml from the ConfigMap that `kubectl kustomize` renders, as shipped."""
    out = subprocess.run(["kubectl", "kustomize", BASE], check=True, capture_output=True,
                         text=True).stdout
    for doc in yaml.safe_load_all(out):
        if doc and doc["kind"] == "ConfigMap" and \
                doc["metadata"]["name"].startswith("switchyard-config"):
            return doc["data"][CONFIG_NAME]
    raise AssertionError("no switchyard-config ConfigMap in the rendered base")


def _replace_once(text, old, new):
    assert text.count(old) == 1, f"the shipped configuration no longer has exactly one {old!r}"
    return text.replace(old, new)


def adapt(text, pod_ip, directory, ca, storage):
    """The shipped file with only what cannot exist here changed: the listeners bind the
    replica's pod address (ports as shipped), the ACME directory is pebble's (whose CA is
    trusted through tls.acme.ca), and the storage path is where this replica mounts it."""
    cfg = yaml.safe_load(text)
    for name, addr in cfg["listen"].items():
        host, port = addr.rsplit(":", 1)
        assert host == "0.0.0.0", f"listen.{name}: {addr}"
        text = _replace_once(text, f"  {name}: {addr}\n", f"  {name}: {pod_ip}:{port}\n")
    acme = cfg["tls"]["acme"]
    text = _replace_once(text, f"    directory: {acme['directory']}\n",
                         f"    directory: {directory}\n")
    text = _replace_once(text, f"    storage: {acme['storage']}\n",
                         f"    storage: {storage}\n    ca: {ca}\n")
    changed = yaml.safe_load(text)
    for c in (changed, cfg):
        del c["listen"]
        for key in ("directory", "storage", "ca"):
            c["tls"]["acme"].pop(key, None)
    assert changed == cfg, "adapt() changed more than the listeners and the ACME server"
    return text


def upstream_pods(text):
    """{version: (host name, port)} of the shipped routes, from the shipped upstreams."""
    site = yaml.safe_load(text)["sites"][0]["version"]
    ups = yaml.safe_load(text)["upstreams"]
    out = {}
    for version, pool in site["routes"].items():
        [server] = ups[pool]["servers"]
        host, port = server.rsplit(":", 1)
        out[version] = (host, int(port))
    return out


def pod_network():
    """A /24 of loopback addresses for this run's pods: 127.N.M.0, picked at random so that
    runs at the same time on one machine do not meet."""
    rnd = random.SystemRandom()
    return f"127.{rnd.randrange(64, 250)}.{rnd.randrange(1, 250)}"


def hosts_file(path, names):
    """Writes an /etc/hosts: localhost plus one line per (name, address), several lines for
    one name giving it several addresses (a headless Service)."""
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    lines += [f"{addr} {name}" for name, addrs in names.items() for addr in addrs]
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o644)
    return path


# ---------------------------------------------------------------- Postfacto pods

class PostfactoPod(socketserver.ThreadingTCPServer):
    """One pod of a Postfacto version on (ip, port): answers every request with JSON naming
    its version, its address and the request's headers (X-Upstream: VERSION@IP), and
    speaks WebSocket on Upgrade: each text message comes back as "VERSION@IP: message"."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, version, ip, port):
        self.version, self.ip = version, ip
        self.name = f"{version}@{ip}"
        self.requests = []
        super().__init__((ip, port), _PodHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()


class _PodHandler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            method, target, _ = line.decode().split(" ", 2)
            headers = {}
            while (h := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                k, v = h.decode().split(":", 1)
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            if n:
                self.rfile.read(n)
            self.server.requests.append({"method": method, "target": target,
                                         "headers": headers})
            if headers.get("upgrade", "").lower() == "websocket":
                return self._websocket(headers)
            body = json.dumps({"version": self.server.version, "pod": self.server.ip,
                               "target": target, "headers": headers}).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" +
                             f"X-Upstream: {self.server.name}\r\n".encode() +
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def _websocket(self, headers):
        accept = base64.b64encode(hashlib.sha1(
            (headers["sec-websocket-key"] + WS_GUID).encode()).digest()).decode()
        self.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
                          f"X-Upstream: {self.server.name}\r\n\r\n").encode())
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = int.from_bytes(self.rfile.read(2), "big")
            elif n == 127:
                n = int.from_bytes(self.rfile.read(8), "big")
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            if opcode == 8:
                self.wfile.write(b"\x88\x02" + data[:2])
                return
            if opcode == 1:
                out = f"{self.server.name}: {data.decode()}".encode()
                assert len(out) < 126
                self.wfile.write(bytes([0x81, len(out)]) + out)


# ---------------------------------------------------------------- gateway replicas

class Replica:
    """A gateway replica on its pod address with the shipped ports."""

    def __init__(self, name, pod_ip, ports, workdir):
        self.name, self.ip, self.ports = name, pod_ip, ports
        self.log_path = workdir / f"{name}.log"
        self.log_file = open(self.log_path, "w")
        self.proc = None

    def log(self):
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text()[-6000:]

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://{self.ip}:{self.ports['admin']}/readyz",
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout=60):
        def up():
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.log()}"
            return self.ready()
        wait_until(up, timeout, f"{self.name} not ready:\n{{log}}", log=self.log)

    def served_certificate(self, sni):
        """DER of the certificate served on the pod's HTTPS port for sni."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection((self.ip, self.ports["https"]), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname=sni) as t:
                return t.getpeercert(binary_form=True)

    def stop(self, timeout=45):
        """SIGTERM, as the kubelet sends; returns the exit status and the log's end."""
        self.terminate()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.wait()
        self.log_file.close()
        return rc, self.log()

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()


class NativeReplica(Replica):
    """build/switchyard in a private mount namespace whose /etc/hosts is the test's."""

    def __init__(self, name, pod_ip, ports, workdir, binary, config_text, hosts, storage):
        super().__init__(name, pod_ip, ports, workdir)
        storage.mkdir(exist_ok=True)
        cfg = workdir / f"{name}.yaml"
        cfg.write_text(config_text)
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--", "sh", "-c",
             'mount --bind "$1" /etc/hosts && exec "$2" -c "$3"', "sh",
             str(hosts), str(binary), str(cfg)],
            stdout=self.log_file, stderr=subprocess.STDOUT)


class ImageReplica(Replica):
    """The container image, run as the Deployment runs it: user 65532, read-only root file
    system, a 64 MiB /tmp, the ConfigMap read-only at /etc/switchyard, the ACME volume at
    /var/lib/switchyard, no capabilities, no privilege escalation, the runtime's default
    seccomp profile. Host network, so that the pod address and loopback peers are reachable;
    the test's /etc/hosts is mounted over the container's."""

    def __init__(self, name, pod_ip, ports, workdir, image, config_text, hosts, storage,
                 ca_file):
        super().__init__(name, pod_ip, ports, workdir)
        cfgdir = workdir / f"{name}-config"
        cfgdir.mkdir()
        (cfgdir / CONFIG_NAME).write_text(config_text)
        (cfgdir / os.path.basename(IN_POD_CA)).write_bytes(ca_file.read_bytes())
        storage.mkdir(exist_ok=True)
        os.chown(storage, 65532, 65532)       # the volume's fsGroup
        self.container = f"switchyard-journey-{os.getpid()}-{name}"
        self.proc = subprocess.Popen(
            ["podman", "run", "--rm", "--name", self.container, "--runtime", "runc",
             "--network", "host", "--user", "65532:65532",
             "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=64m,mode=1777",
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
             "--ulimit", "nofile=16384:16384", "--ulimit", "nproc=4096:4096",
             "-v", f"{cfgdir}:/etc/switchyard:ro",
             "-v", f"{storage}:{IN_POD_STORAGE}",
             "-v", f"{hosts}:/etc/hosts:ro",
             image, "-c", IN_POD_CONFIG],
            stdout=self.log_file, stderr=subprocess.STDOUT)

    def terminate(self):
        """To the gateway in the container (PID 1), not to the podman client."""
        subprocess.run(["podman", "kill", "--signal", "TERM", self.container],
                       capture_output=True)

    def kill(self):
        subprocess.run(["podman", "rm", "-f", "-t", "0", self.container], capture_output=True)
        super().kill()


def wait_issued(replicas, root_pem, sni, timeout=120):
    """Waits until every replica serves a certificate for sni that verifies against the
    ACME server's root; returns the DER each one serves."""
    ctx = ssl.create_default_context(cadata=root_pem)

    def verified(r):
        try:
            with socket.create_connection((r.ip, r.ports["https"]), timeout=5) as s:
                with ctx.wrap_socket(s, server_hostname=sni) as t:
                    return t.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError):
            return None

    out = {}

    def all_issued():
        for r in replicas:
            assert r.proc.poll() is None, f"{r.name} exited:\n{r.log()}"
            if r.name not in out:
                der = verified(r)
                if der:
                    out[r.name] = der
        return len(out) == len(replicas)
    wait_until(all_issued, timeout, "certificate not served by every replica:\n{log}",
               log=lambda: "\n".join(f"== {r.name}\n{r.log()}" for r in replicas))
    return out
