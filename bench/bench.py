#!/usr/bin/env python3
"""Side-by-side benchmark: Switchyard against nginx, HAProxy and Caddy (and H2O
in the HTTP/2 rows).

Started by bench/run.sh (which installs the tools and builds Switchyard); see
bench/README.md for what is measured and how to read the numbers.
"""
import argparse
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(BENCH, "configs")
VERSION_HEADER = "X-Postfacto-Version"
CLK_TCK = os.sysconf("SC_CLK_TCK")

PROXIES = ["nginx", "haproxy", "caddy", "switchyard", "switchyard_uring"]
# The same binary on each event loop backend (--io-backend): "switchyard" is the epoll row.
SY_BACKEND = {"switchyard": "epoll", "switchyard_uring": "io_uring"}
# Interleaving order inside each round; "direct" is upstream A without a proxy.
ORDER = ["direct"] + PROXIES
# HTTP/2 rows (TLS, ALPN h2): H2O takes part in these only (its config has no
# plain HTTP listener).
H2_PROXIES = ["nginx", "haproxy", "caddy", "h2o", "switchyard", "switchyard_uring"]
H2_PEERS = ["nginx", "haproxy", "caddy", "h2o"]
ALL = ORDER + ["h2o"]
LABEL = {
    "direct": "direct (upstream A)",
    "nginx": "nginx",
    "haproxy": "haproxy",
    "caddy": "caddy",
    "h2o": "h2o",
    "switchyard": "switchyard (epoll)",
    "switchyard_uring": "switchyard (io_uring)",
}


def log(msg=""):
    print(msg, flush=True)


def loud(msg):
    bar = "!" * 78
    print("%s\n!! %s\n%s" % (bar, msg, bar), flush=True)


# --------------------------------------------------------------------------
# processes

class Proc:
    """A server started by this harness: its own process group, stopped by pid."""

    registry = []

    def __init__(self, name, argv, logfile, env=None, cwd=None):
        self.name = name
        self.argv = argv
        self.logfile = logfile
        out = open(logfile, "ab")
        self.popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True,
        )
        out.close()
        self.pid = self.popen.pid
        Proc.registry.append(self)
        with open(os.path.join(os.path.dirname(logfile), "pids"), "a") as f:
            f.write("%d %s\n" % (self.pid, os.path.basename(argv[0])))

    def alive(self):
        return self.popen.poll() is None

    def tree(self):
        """pid of the process and of all its descendants."""
        children = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        pids, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            pids.append(p)
            todo.extend(children.get(p, []))
        return pids

    def rss_kib(self):
        """(sum of VmRSS, sum of Pss) over the process tree, KiB."""
        rss = pss = 0
        for p in self.tree():
            try:
                with open("/proc/%d/status" % p) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            rss += int(line.split()[1])
                with open("/proc/%d/smaps_rollup" % p) as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1])
            except OSError:
                pass
        return rss, pss

    def cpu_split(self):
        """(user, kernel) CPU seconds used so far by all processes of this server."""
        user = kernel = 0
        for p in self.tree():
            try:
                with open("/proc/%d/stat" % p) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                user += int(fields[11])  # utime
                kernel += int(fields[12])  # stime
            except OSError:
                pass
        return user / CLK_TCK, kernel / CLK_TCK

    def cpu_seconds(self):
        return sum(self.cpu_split())

    def tail(self, n=8):
        try:
            with open(self.logfile, "rb") as f:
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
            return "\n".join("    | " + l for l in lines[-n:])
        except OSError:
            return ""

    def stop(self, grace=5):
        if not self.alive():
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # leftovers of the group (workers)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    @classmethod
    def stop_all(cls):
        for p in reversed(cls.registry):
            p.stop()
        cls.registry = []


def port_open(port, timeout=0.2):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(port):
    """Free for a server: nothing listens there (TIME_WAIT leftovers do not count)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_ports(proc, ports, seconds=10.0):
    """Wait until every port accepts; returns the list of ports that never did."""
    deadline = time.monotonic() + seconds
    missing = list(ports)
    while time.monotonic() < deadline:
        missing = [p for p in missing if not port_open(p)]
        if not missing or not proc.alive():
            break
        time.sleep(0.1)
    return missing


# --------------------------------------------------------------------------
# client side

class Client:
    def __init__(self, cpu):
        self.prefix = ["taskset", "-c", cpu] if cpu else []

    def run(self, argv, timeout):
        return subprocess.run(self.prefix + argv, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout)


def curl_check(client, url, version, cacert, h2=False):
    argv = ["curl", "-sS", "--max-time", "5", "-D", "-", "-o", "-"]
    if url.startswith("https"):
        argv += ["--cacert", cacert]
    if url.startswith("https"):
        # curl offers h2 in ALPN by default: say which protocol is checked.
        argv.append("--http2" if h2 else "--http1.1")
    if version is not None:
        argv += ["-H", "%s: %s" % (VERSION_HEADER, version)]
    argv.append(url)
    r = client.run(argv, timeout=15)
    text = r.stdout.decode("latin-1")
    if r.returncode != 0:
        return None, None, None, text.strip()
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = lines[0].split(" ")[1] if lines and " " in lines[0] else "?"
    if h2 and not lines[0].startswith("HTTP/2 "):
        status = "%s (not HTTP/2: %r)" % (status, lines[0][:20])
    marker = None
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "x-upstream":
            marker = v.strip()
    return status, marker, body, None


def check_routing(client, url, cacert, h2=False):
    """None when routing is right, else a description of what is wrong."""
    cases = [("4.1.0", "A"), ("4.2.0", "B"), (None, "B"), ("9.9.9", "B")]
    for version, want in cases:
        status, marker, body, err = curl_check(client, url, version, cacert, h2)
        what = "header %s" % version if version else "no header"
        if err is not None:
            return "%s: curl failed: %s" % (what, err.splitlines()[-1] if err else "?")
        if status != "200" or marker != want or body != want:
            return "%s: expected 200 from upstream %s, got status %s, X-Upstream %r, body %r" % (
                what, want, status, marker, body[:40])
    return None


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(text):
    def num(pattern, default=None, cast=float):
        m = re.search(pattern, text, re.M)
        return cast(m.group(1)) if m else default

    def lat(pct):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s|m)\s*$" % pct, text, re.M)
        return float(m.group(1)) * UNIT_MS[m.group(2)] if m else None

    res = {
        "rps": num(r"^Requests/sec:\s+([\d.]+)"),
        "requests": num(r"^\s+(\d+) requests in", 0, int),
        "p50_ms": lat(50),
        "p99_ms": lat(99),
        "non_2xx": num(r"Non-2xx or 3xx responses: (\d+)", 0, int),
        "socket_errors": 0,
    }
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        res["socket_errors"] = sum(int(x) for x in m.groups())
    return res


def parse_h2load(text):
    """h2load's summary: req/s, requests done, non-2xx and failed streams. Its
    latency table has no percentiles: those come from the --log-file."""
    def num(pattern, default=None, cast=float):
        m = re.search(pattern, text, re.M)
        return cast(m.group(1)) if m else default

    done = num(r"^requests: \d+ total, \d+ started, (\d+) done", 0, int)
    ok2xx = num(r"^status codes: (\d+) 2xx", 0, int)
    m = re.search(r"^requests: .* (\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    return {
        "rps": num(r"^finished in [\d.]+m?s, ([\d.]+) req/s"),
        "requests": done,
        "p50_ms": None,
        "p99_ms": None,
        "non_2xx": max(done - ok2xx, 0),
        "socket_errors": sum(int(x) for x in m.groups()) if m else 0,
    }


def latency_percentiles(log_path):
    """(p50, p99) in ms from h2load's --log-file (start us, status, duration us
    per request), successful streams only; (None, None) when empty."""
    durations = []
    try:
        with open(log_path) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1] != "-1":
                    durations.append(int(parts[2]))
    except OSError:
        return None, None
    if not durations:
        return None, None
    durations.sort()

    def pct(p):
        # nearest rank
        return durations[min(len(durations) - 1, max(0, int(-(-p * len(durations) // 100)) - 1))] / 1000.0
    return pct(50), pct(99)


# --------------------------------------------------------------------------
# the run

class Target:
    def __init__(self, name):
        self.name = name
        self.proc = None
        self.http_port = None
        self.https_port = None
        self.status = "ok"           # ok | n/a
        self.reason = None
        self.https_status = "ok"
        self.https_reason = None
        self.version = None
        self.h2_status = "ok"
        self.h2_reason = None
        self.runs = {"http": [], "https": [], "handshake": [], "resumed": [], "h2": []}
        self.memory = {}
        self.rss_after = {"http": [], "https": [], "h2": []}

    def usable(self, kind="http"):
        if self.status != "ok":
            return False
        if kind != "http" and self.https_status != "ok":
            return False
        if kind == "h2" and self.h2_status != "ok":
            return False
        if kind != "h2" and self.http_port is None:  # h2o: HTTP/2 rows only
            return False
        return True

    def disable(self, reason, https_only=False, quiet=False, h2_only=False):
        if h2_only:
            if self.h2_status == "ok":
                self.h2_status, self.h2_reason = "n/a", reason
                loud("%s HTTP/2 rows: n/a (%s)" % (self.name, reason))
            return
        if quiet:
            self.status, self.reason = "n/a", reason
        elif https_only:
            if self.https_status == "ok":
                self.https_status, self.https_reason = "n/a", reason
                loud("%s HTTPS rows: n/a (%s)" % (self.name, reason))
        elif self.status == "ok":
            self.status, self.reason = "n/a", reason
            loud("%s rows: n/a (%s)" % (self.name, reason))
            if self.proc is not None and self.name != "direct":
                self.proc.stop()  # no use for it any more: free the CPU


def render(template, dest, values):
    with open(os.path.join(CONFIGS, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise RuntimeError("unfilled placeholders in %s: %s" % (template, sorted(set(left))))
    with open(dest, "w") as f:
        f.write(text)
    return dest


def tool_version(argv):
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        lines = r.stdout.decode("utf-8", "replace").strip().splitlines()
        return lines[0].strip() if lines else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def pick_ports(base):
    layout = {
        "A": 1, "B": 2,
        "nginx_http": 10, "nginx_https": 11,
        "haproxy_http": 20, "haproxy_https": 21,
        "caddy_http": 30, "caddy_https": 31,
        "switchyard_http": 40, "switchyard_https": 41, "switchyard_admin": 42,
        "switchyard_uring_http": 43, "switchyard_uring_https": 44, "switchyard_uring_admin": 45,
        "h2o_https": 51,
    }
    for attempt in range(20):
        b = base + attempt * 100
        ports = {k: b + off for k, off in layout.items()}
        if all(port_free(p) for p in ports.values()):
            return ports
        log("ports %d..%d: some are in use, trying the next block" % (b, b + 99))
    raise RuntimeError("no free block of ports above %d" % base)


def make_cert(run_dir):
    cert = os.path.join(run_dir, "cert.pem")
    key = os.path.join(run_dir, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "7", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    both = os.path.join(run_dir, "cert-and-key.pem")
    with open(both, "w") as out:
        for p in (cert, key):
            with open(p) as f:
                out.write(f.read())
    return cert, key, both


def strip_https(yaml_text):
    """Switchyard config without the https listener and tls section."""
    out, skipping = [], False
    for line in yaml_text.splitlines():
        if skipping and (line.startswith(" ") or not line.strip()):
            continue
        skipping = False
        if line.startswith("tls:"):
            skipping = True
            continue
        line = re.sub(r',\s*https:\s*"[^"]*"', "", line)
        out.append(line)
    return "\n".join(out) + "\n"


def start_target(t, run_dir, values, args):
    name = t.name
    env = dict(os.environ)
    if name == "nginx":
        os.makedirs(os.path.join(run_dir, "nginx-tmp"), exist_ok=True)
        cfg = render("nginx.conf", os.path.join(run_dir, "nginx.conf"), values)
        argv = ["nginx", "-p", run_dir, "-e", os.path.join(run_dir, "nginx.error.log"), "-c", cfg]
    elif name == "haproxy":
        cfg = render("haproxy.cfg", os.path.join(run_dir, "haproxy.cfg"), values)
        argv = ["haproxy", "-db", "-f", cfg]
    elif name == "caddy":
        cfg = render("Caddyfile", os.path.join(run_dir, "Caddyfile"), values)
        env.update(GOMAXPROCS="2", HOME=run_dir, XDG_CONFIG_HOME=os.path.join(run_dir, "caddy-config"),
                   XDG_DATA_HOME=os.path.join(run_dir, "caddy-data"))
        argv = ["caddy", "run", "--adapter", "caddyfile", "--config", cfg]
    elif name == "h2o":
        cfg = render("h2o.yaml", os.path.join(run_dir, "h2o.yaml"), values)
        argv = ["h2o", "-c", cfg]
    elif name in SY_BACKEND:
        if args.switchyard_build_failed:
            t.disable("build failed: see %s" % args.switchyard_build_failed)
            return
        if not os.access(args.switchyard, os.X_OK):
            t.disable("no binary at %s" % args.switchyard)
            return
        cfg = render("switchyard.yaml", os.path.join(run_dir, "%s.yaml" % name), values)
        argv = [args.switchyard, "--io-backend=" + SY_BACKEND[name], "-c", cfg]
    else:
        raise ValueError(name)

    logfile = os.path.join(run_dir, "%s.log" % name)
    if name in SY_BACKEND:
        chk = subprocess.run([args.switchyard, "-t", "-c", cfg], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=20)
        if chk.returncode != 0:
            log("switchyard -t rejects the full config (exit %d): %s" % (
                chk.returncode, chk.stdout.decode("utf-8", "replace").strip()[:300]))
    t.proc = Proc(name, argv, logfile, env=env, cwd=run_dir)
    missing = wait_ports(t.proc, [p for p in (t.http_port, t.https_port) if p])
    if not t.proc.alive() and name in SY_BACKEND:
        # The build may not know the https listener / tls section yet: retry plain HTTP.
        log("switchyard exited at start with the full config:\n%s" % t.proc.tail())
        with open(cfg) as f:
            plain = strip_https(f.read())
        cfg = os.path.join(run_dir, "%s-http-only.yaml" % name)
        with open(cfg, "w") as f:
            f.write(plain)
        log("retrying switchyard without the https listener and tls section (%s)" % cfg)
        t.proc = Proc(name, [args.switchyard, "--io-backend=" + SY_BACKEND[name], "-c", cfg], logfile,
                      env=env, cwd=run_dir)
        missing = wait_ports(t.proc, [t.http_port, t.https_port])
        t.disable("not supported by this build: config with https/tls refused at start", https_only=True)
    if not t.proc.alive():
        log("%s log (%s):\n%s" % (name, logfile, t.proc.tail()))
        last = t.proc.tail(1).replace("    | ", "").strip()
        t.disable("exited at start (exit %s): %s" % (t.proc.popen.returncode, last[:160]))
        return
    if t.http_port and t.http_port in missing:
        t.disable("HTTP listener 127.0.0.1:%d never came up; log %s" % (t.http_port, logfile))
        return
    if t.https_port in missing and t.http_port is None:
        t.disable("HTTPS listener 127.0.0.1:%d never came up; log %s" % (t.https_port, logfile))
    elif t.https_port in missing:
        hint = "not supported by this build" if name in SY_BACKEND else "failed"
        t.disable("%s: HTTPS listener 127.0.0.1:%d never came up" % (hint, t.https_port), https_only=True)


def measure_idle_conns(t, n, client, run_dir, settle_max_s, h2_cert=None):
    """Open n keep-alive connections, hold them idle, read the proxy's RSS.
    With h2_cert: HTTP/2 connections over TLS to the HTTPS port, and the RSS
    difference is taken from the RSS read right before (the HTTP/1.1 test ran
    just before it), not from the idle RSS."""
    rss0, pss0 = t.proc.rss_kib()
    argv = client.prefix + [sys.executable, os.path.join(BENCH, "idleconns.py"), "127.0.0.1",
                            str(t.https_port if h2_cert else t.http_port), str(n)]
    if h2_cert:
        argv += ["4.1.0", "--h2", h2_cert]
    base_rss = rss0 if h2_cert else t.memory["rss_idle_kib"]
    base_pss = pss0 if h2_cert else t.memory["pss_idle_kib"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=open(os.path.join(run_dir, "idleconns-%s%s.log" % (
                             t.name, "-h2" if h2_cert else "")), "wb"),
                         text=True)
    try:
        line = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if line.startswith("READY") or not line:
                break
        if not line.startswith("READY"):
            raise RuntimeError("idle-connection client gave no READY line")
        ready = dict(kv.split("=", 1) for kv in line.split()[1:])
        # Idle means idle: buffers a proxy pooled while the connections were being
        # opened (200 at a time) may still be held a moment later. Read the RSS
        # every second, from 1 s up to settle_max_s, until it stops moving (two
        # readings within 1 %); the first reading is kept in the JSON too.
        time.sleep(1.0)
        rss1, pss1 = t.proc.rss_kib()
        first = (rss1, pss1)
        for _ in range(settle_max_s - 1):
            time.sleep(1.0)
            rss2, pss2 = t.proc.rss_kib()
            settled = abs(rss2 - rss1) <= rss1 / 100
            rss1, pss1 = rss2, pss2
            if settled:
                break
        p.stdin.write("CHECK\n")
        p.stdin.flush()
        alive_line = p.stdout.readline()
        alive = int(alive_line.split()[1]) if alive_line.startswith("ALIVE") else 0
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    held = alive
    res = {
        "connections_target": n,
        "connections_answered": int(ready["answered"]),
        "connections_failed": int(ready["failed"]),
        "failure_reasons": ready.get("reasons", ""),
        "connections_alive_at_measure": alive,
        "open_seconds": float(ready["seconds"]),
        "rss_before_kib": rss0, "pss_before_kib": pss0,
        "rss_conns_kib": rss1, "pss_conns_kib": pss1,
        "rss_conns_first_kib": first[0], "pss_conns_first_kib": first[1],
        "per_conn_bytes_first": round((first[0] - base_rss) * 1024 / held) if held else None,
        "per_conn_bytes": round((rss1 - base_rss) * 1024 / held) if held else None,
        "per_conn_bytes_pss": round((pss1 - base_pss) * 1024 / held) if held else None,
    }
    if held < n or res["connections_answered"] < n:
        res["warning"] = "%d of %d answered, %d open when measured (failures: %s)" % (
            res["connections_answered"], n, held, res["failure_reasons"])
        loud("%s: %s" % (t.name, res["warning"]))
    time.sleep(0.5)
    return res


def tcp_out_segs():
    """TCP segments sent by the whole machine so far (/proc/net/snmp Tcp OutSegs)."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Tcp:")]
        return int(rows[1][rows[0].index("OutSegs")])
    except (OSError, ValueError, IndexError):
        return None


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def per_req(res, key, seconds_used):
    res[key] = round(seconds_used * 1e6 / res["requests"], 1) if res["requests"] and seconds_used is not None else None


def run_load(t, upstream, client, argv, seconds, log_path, parse):
    """Runs a load client against t, appends its output to log_path and returns (exit
    status, output, parse(output) with the CPU per request of the server under test, of
    the load client and of upstream A (None when t is upstream A), TCP segments sent)."""
    up = upstream if upstream is not None and upstream is not t.proc else None
    (usr0, sys0), up0, cl0, segs0 = t.proc.cpu_split(), up.cpu_seconds() if up else 0, children_cpu(), tcp_out_segs()
    r = client.run(argv, timeout=seconds + 30)
    (usr1, sys1), up1, cl1, segs1 = t.proc.cpu_split(), up.cpu_seconds() if up else 0, children_cpu(), tcp_out_segs()
    cpu0, cpu1 = usr0 + sys0, usr1 + sys1
    text = r.stdout.decode("utf-8", "replace")
    with open(log_path, "a") as f:
        f.write("$ %s\n%s\n" % (" ".join(argv), text))
    res = parse(text)
    res["server_cpu_s"] = round(cpu1 - cpu0, 2)
    per_req(res, "cpu_us_per_req", cpu1 - cpu0)
    per_req(res, "kernel_cpu_us_per_req", sys1 - sys0)
    per_req(res, "client_cpu_us_per_req", cl1 - cl0)
    per_req(res, "upstream_cpu_us_per_req", (up1 - up0) if up else None)
    segs = segs1 - segs0 if segs0 is not None and segs1 is not None else None
    return r.returncode, text, res, segs


def run_wrk(t, kind, port, seconds, client, run_dir, upstream):
    scheme = "http" if kind == "http" else "https"
    url = "%s://127.0.0.1:%d/" % (scheme, port)
    argv = ["wrk", "-t1", "-c64", "-d%ds" % seconds, "--latency",
            "-H", "%s: 4.1.0" % VERSION_HEADER]
    if kind == "resumed":
        argv += ["-H", "Connection: close"]
    argv.append(url)
    rc, text, res, segs = run_load(t, upstream, client, argv, seconds,
                                   os.path.join(run_dir, "wrk-%s-%s.txt" % (t.name, kind)), parse_wrk)
    # Every segment on loopback costs a send and a receive in the kernel: a
    # proxy that adds pure ACKs or splits answers shows it here.
    res["tcp_segs_per_req"] = round(segs / res["requests"], 2) if res["requests"] and segs is not None else None
    if rc != 0 or res["rps"] is None or not res["requests"]:
        res["error"] = "wrk failed (exit %d): %s" % (rc, text.strip()[-300:])
    elif res["non_2xx"] or res["socket_errors"]:
        res["warning"] = "%d non-2xx, %d socket errors" % (res["non_2xx"], res["socket_errors"])
    return res


def run_h2load(t, port, seconds, client, run_dir, upstream, rnd):
    """HTTP/2 over TLS: 16 connections x 10 streams, one client thread; p50/p99
    from the per-request log (removed once read: it is large)."""
    lat_log = os.path.join(run_dir, "h2load-%s-r%d.log" % (t.name, rnd))
    argv = ["h2load", "-c", "16", "-m", "10", "-t", "1", "-D", str(seconds), "--log-file", lat_log,
            "-H", "%s: 4.1.0" % VERSION_HEADER.lower(), "https://127.0.0.1:%d/" % port]
    rc, text, res, segs = run_load(t, upstream, client, argv, seconds,
                                   os.path.join(run_dir, "h2load-%s.txt" % t.name), parse_h2load)
    res["p50_ms"], res["p99_ms"] = latency_percentiles(lat_log)
    try:
        os.unlink(lat_log)
    except OSError:
        pass
    res["tcp_segs_per_req"] = round(segs / res["requests"], 2) if res["requests"] and segs is not None else None
    if "Application protocol: h2" not in text:
        res["error"] = "h2load did not negotiate h2 (exit %d): %s" % (rc, text.strip()[-300:])
    elif rc != 0 or res["rps"] is None or not res["requests"] or res["p99_ms"] is None:
        res["error"] = "h2load failed (exit %d): %s" % (rc, text.strip()[-300:])
    elif res["non_2xx"] or res["socket_errors"]:
        res["warning"] = "%d non-2xx, %d failed streams" % (res["non_2xx"], res["socket_errors"])
    return res


def parse_tlsload(text):
    kv = dict(x.split("=", 1) for x in text.split() if "=" in x)
    get = lambda k, cast=float: cast(kv[k]) if k in kv else None
    return {"rps": get("rps"), "requests": get("requests", int) or 0,
            "p50_ms": get("p50_ms"), "p99_ms": get("p99_ms"),
            "non_2xx": get("errors", int) or 0, "socket_errors": 0,
            "full_handshakes": get("full", int), "resumed_handshakes": get("resumed", int)}


def run_tlsload(t, port, seconds, client, run_dir, tlsload, upstream):
    """Full TLS handshakes per second (bench/tlsload.c): no session kept, no ticket asked."""
    argv = [tlsload, "-p", str(port), "-c", "64", "-d", str(seconds),
            "-H", "%s: 4.1.0" % VERSION_HEADER]
    rc, text, res, _ = run_load(t, upstream, client, argv, seconds,
                                os.path.join(run_dir, "tlsload-%s.txt" % t.name), parse_tlsload)
    if rc != 0 or res["rps"] is None or not res["requests"]:
        res["error"] = "tlsload failed (exit %d): %s" % (rc, text.strip()[-300:])
    elif res["resumed_handshakes"]:
        res["error"] = "%d handshakes were resumed in a full-handshake test" % res["resumed_handshakes"]
    elif res["non_2xx"]:
        res["warning"] = "%d connections failed or answered non-200" % res["non_2xx"]
    return res


def build_tlsload(run_dir):
    out = os.path.join(run_dir, "tlsload")
    r = subprocess.run(["cc", "-O2", "-o", out, os.path.join(BENCH, "tlsload.c"), "-lssl", "-lcrypto"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("cannot build bench/tlsload.c:\n" + r.stdout.decode("utf-8", "replace"))
    return out


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None and "error" not in r]
    return statistics.median(vals) if vals else None


def summarize(runs):
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return None
    return {
        "rounds": len(ok),
        "rps": median_of(ok, "rps"),
        "rps_min": min(r["rps"] for r in ok),
        "rps_max": max(r["rps"] for r in ok),
        "p50_ms": median_of(ok, "p50_ms"),
        "p99_ms": median_of(ok, "p99_ms"),
        "p99_ms_min": min((r["p99_ms"] for r in ok if r.get("p99_ms") is not None), default=None),
        "p99_ms_max": max((r["p99_ms"] for r in ok if r.get("p99_ms") is not None), default=None),
        "cpu_us_per_req": median_of(ok, "cpu_us_per_req"),
        "kernel_cpu_us_per_req": median_of(ok, "kernel_cpu_us_per_req"),
        "tcp_segs_per_req": median_of(ok, "tcp_segs_per_req"),
        "client_cpu_us_per_req": median_of(ok, "client_cpu_us_per_req"),
        "upstream_cpu_us_per_req": median_of(ok, "upstream_cpu_us_per_req"),
        "errors": sum(r["non_2xx"] + r["socket_errors"] for r in ok),
    }


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--switchyard", required=True, help="path of the switchyard binary")
    ap.add_argument("--switchyard-build-failed", default="", help="build log path when make failed")
    ap.add_argument("--results", default=os.path.join(BENCH, "results"))
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("BENCH_PORT_BASE", "28000")))
    ap.add_argument("--client-cpu", default=os.environ.get("BENCH_CLIENT_CPU", "1"),
                    help="CPU list for taskset of every client (wrk, h2load, curl, idle client); '' = no pinning")
    ap.add_argument("--only", default="", help="comma list of proxies to run (default: all)")
    args = ap.parse_args()

    quick = args.quick
    cfg = {
        "mode": "quick" if quick else "full",
        # Five short rounds rather than three long ones: the same time, but the
        # median (of p99 above all) rests on more runs, and with the order
        # rotated each round every target runs once in every position.
        "http_rounds": 1 if quick else 5,
        "https_rounds": 1 if quick else 5,
        "handshake_rounds": 1 if quick else 3,
        "seconds": 3 if quick else 6,
        "handshake_seconds": 2 if quick else 5,
        "resumed_rounds": 1 if quick else 3,
        "resumed_seconds": 1 if quick else 5,
        "settle_max_s": 3 if quick else 6,
        "idle_connections": int(os.environ.get("BENCH_IDLE_CONNECTIONS") or (1000 if quick else 10000)),
        "wrk": "wrk -t1 -c64 --latency -H 'X-Postfacto-Version: 4.1.0'",
        # HTTP/2: rounds of h2load through each proxy, interleaved like the others.
        "h2_rounds": 1 if quick else 5,
        "h2_seconds": 1 if quick else 6,
        # Each idle h2 connection costs the Python client a TLS handshake (a few
        # ms): fewer than the HTTP/1.1 test, so the test stays within minutes.
        "h2_idle_connections": int(os.environ.get("BENCH_IDLE_H2_CONNECTIONS") or (200 if quick else 2000)),
        "h2_settle_max_s": 1 if quick else 6,
        "h2load": "h2load -c16 -m10 -t1 -H 'x-postfacto-version: 4.1.0'",
    }
    ncpu = os.cpu_count() or 1
    cpu = args.client_cpu
    if cpu and ncpu < 2:
        cpu = ""
    client = Client(cpu)
    placement = ("clients (wrk, h2load, tlsload, curl, idle-connection client) pinned to CPU %s with taskset; "
                 "proxies and upstreams unpinned (free on all %d CPUs)" % (cpu, ncpu)
                 if cpu else "nothing pinned (%d CPUs)" % ncpu)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(args.results, exist_ok=True)
    run_dir = os.path.join(args.results, "run-%s" % stamp)
    os.makedirs(run_dir)
    started = time.monotonic()
    load_before = os.getloadavg()

    log("== Switchyard side-by-side benchmark (%s mode)" % cfg["mode"])
    log("   run directory: %s" % run_dir)
    log("   placement: %s" % placement)
    if load_before[0] > 0.5:
        log("   note: load average %.2f before start: other work is running, numbers will be noisy"
            % load_before[0])

    tlsload = build_tlsload(run_dir)
    ports = pick_ports(args.port_base)
    cert, key, both = make_cert(run_dir)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    values = {"RUN": run_dir, "CERT": cert, "KEY": key, "CERT_KEY_PEM": both, "NOFILE": nofile,
              "PORT_A": ports["A"], "PORT_B": ports["B"]}

    targets = {n: Target(n) for n in ALL}
    only = [x for x in args.only.split(",") if x]
    for n in H2_PROXIES:
        if only and n not in only:
            targets[n].disable("not selected (--only)", quiet=True)

    # upstreams: without them nothing can be measured
    for name in ("A", "B"):
        os.makedirs(os.path.join(run_dir, "upstream-%s-tmp" % name), exist_ok=True)
        v = dict(values, NAME=name, PORT=ports[name])
        conf = render("upstream-nginx.conf", os.path.join(run_dir, "upstream-%s.conf" % name), v)
        p = Proc("upstream-" + name, ["nginx", "-p", run_dir, "-e",
                                      os.path.join(run_dir, "upstream-%s.error.log" % name), "-c", conf],
                 os.path.join(run_dir, "upstream-%s.log" % name), cwd=run_dir)
        if wait_ports(p, [ports[name]]):
            raise RuntimeError("upstream %s did not start:\n%s" % (name, p.tail()))
        if name == "A":
            direct = targets["direct"]
            direct.proc, direct.http_port = p, ports["A"]
            direct.https_status, direct.https_reason = "n/a", "upstream is plain HTTP"
    for name in ("A", "B"):
        st, marker, body, err = curl_check(client, "http://127.0.0.1:%d/" % ports[name], None, cert)
        if err or marker != name or body != name:
            raise RuntimeError("upstream %s answers wrongly: %s %r %r" % (name, err, marker, body))

    targets["direct"].version = tool_version(["nginx", "-v"])
    versions = {"nginx": ["nginx", "-v"], "haproxy": ["haproxy", "-v"], "caddy": ["caddy", "version"],
                "h2o": ["h2o", "--version"], "switchyard": [args.switchyard, "--version"],
                "switchyard_uring": [args.switchyard, "--version"]}
    if not shutil.which("h2load"):
        for n in H2_PROXIES:
            targets[n].disable("h2load not installed (Debian nghttp2-client)", h2_only=True)
    if not shutil.which("h2o") and targets["h2o"].status == "ok":
        targets["h2o"].disable("h2o not installed (Debian h2o)")
    for n in H2_PROXIES:
        t = targets[n]
        t.http_port, t.https_port = ports.get(n + "_http"), ports[n + "_https"]
        if t.status != "ok":
            continue
        t.version = tool_version(versions[n]) if (n not in SY_BACKEND or os.access(args.switchyard, os.X_OK)) else None
        v = dict(values, PORT_HTTP=t.http_port, PORT_HTTPS=t.https_port)
        if n in SY_BACKEND:
            v["PORT_ADMIN"] = ports[n + "_admin"]
        start_target(t, run_dir, v, args)
        log("   %-16s %s" % (n, "started (pid %d)" % t.proc.pid if t.status == "ok" else "n/a"))

    # routing must be right before anything is timed
    log("\n== routing check (4.1.0 -> A, 4.2.0 -> B, none -> B, unknown -> B)")
    for n in PROXIES:
        t = targets[n]
        if t.status != "ok":
            continue
        err = check_routing(client, "http://127.0.0.1:%d/" % t.http_port, cert)
        if err:
            t.disable("wrong routing over HTTP: %s" % err)
            continue
        if t.https_status == "ok":
            err = check_routing(client, "https://127.0.0.1:%d/" % t.https_port, cert)
            if err:
                t.disable("wrong routing over HTTPS: %s" % err, https_only=True)
        log("   %-16s HTTP ok, HTTPS %s" % (n, "ok" if t.https_status == "ok" else "n/a"))
    for n in H2_PROXIES:
        t = targets[n]
        if t.status != "ok" or t.https_status != "ok" or t.h2_status != "ok":
            continue
        err = check_routing(client, "https://127.0.0.1:%d/" % t.https_port, cert, h2=True)
        if err and n == "h2o":
            t.disable("wrong routing over HTTP/2: %s" % err)
            continue
        if err:
            t.disable("wrong routing over HTTP/2: %s" % err, h2_only=True)
        log("   %-16s HTTP/2 %s" % (n, "ok" if t.h2_status == "ok" else "n/a"))

    # memory: idle, then N idle keep-alive connections
    time.sleep(1.0)
    for n in ALL:
        t = targets[n]
        if t.status == "ok":
            rss, pss = t.proc.rss_kib()
            t.memory["rss_idle_kib"], t.memory["pss_idle_kib"] = rss, pss
    log("\n== %d idle keep-alive connections per proxy" % cfg["idle_connections"])
    for n in PROXIES:
        t = targets[n]
        if not t.usable():
            continue
        try:
            t.memory["idle_connections"] = m = measure_idle_conns(t, cfg["idle_connections"], client, run_dir,
                                                                     cfg["settle_max_s"])
            log("   %-16s answered %d/%d in %.1fs, alive %d, RSS %d -> %d KiB" % (
                n, m["connections_answered"], m["connections_target"], m["open_seconds"],
                m["connections_alive_at_measure"], t.memory["rss_idle_kib"], m["rss_conns_kib"]))
        except Exception as e:  # the proxy may have died under the connections
            t.memory["idle_connections"] = {"error": str(e)}
            loud("%s: idle-connection test failed: %s" % (n, e))
        if not t.proc.alive():
            t.disable("died during the idle-connection test:\n%s" % t.proc.tail())
    log("\n== %d idle HTTP/2 connections (TLS) per proxy" % cfg["h2_idle_connections"])
    for n in H2_PROXIES:
        t = targets[n]
        if not t.usable("h2"):
            continue
        try:
            t.memory["idle_connections_h2"] = m = measure_idle_conns(
                t, cfg["h2_idle_connections"], client, run_dir, cfg["h2_settle_max_s"], h2_cert=cert)
            log("   %-16s answered %d/%d in %.1fs, alive %d, RSS %d -> %d KiB" % (
                n, m["connections_answered"], m["connections_target"], m["open_seconds"],
                m["connections_alive_at_measure"], m["rss_before_kib"], m["rss_conns_kib"]))
        except Exception as e:
            t.memory["idle_connections_h2"] = {"error": str(e)}
            loud("%s: idle HTTP/2 connection test failed: %s" % (n, e))
        if not t.proc.alive():
            t.disable("died during the idle HTTP/2 connection test:\n%s" % t.proc.tail())

    def rounds(kind, nrounds, seconds, order):
        for r in range(nrounds):
            log("\n== %s round %d/%d (%ds each)" % (kind, r + 1, nrounds, seconds))
            # Rotate the order each round: no target always runs right after
            # the same other one, or always first on a machine that just idled.
            k = r % len(order)
            for n in order[k:] + order[:k]:
                t = targets[n]
                if not t.usable(kind):
                    continue
                port = t.http_port if kind == "http" else t.https_port
                if kind == "h2":
                    res = run_h2load(t, port, seconds, client, run_dir, targets["direct"].proc, r + 1)
                elif kind == "handshake":
                    res = run_tlsload(t, port, seconds, client, run_dir, tlsload, targets["direct"].proc)
                else:
                    res = run_wrk(t, kind, port, seconds, client, run_dir, targets["direct"].proc)
                res["round"] = r + 1
                t.runs[kind].append(res)
                if kind in ("http", "https", "h2") and n != "direct":
                    t.rss_after[kind].append(t.proc.rss_kib()[0])
                    res["rss_after_kib"] = t.rss_after[kind][-1]
                if "error" in res:
                    loud("%s %s: %s" % (n, kind, res["error"]))
                else:
                    log("   %-22s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  cpu %6s us/req%s" % (
                        LABEL[n], res["rps"], res["p50_ms"], res["p99_ms"],
                        fmt(res["cpu_us_per_req"], ".1f"),
                        ("  (" + res["warning"] + ")") if "warning" in res else ""))
                if not t.proc.alive():
                    t.disable("died during %s load:\n%s" % (kind, t.proc.tail()))

    rounds("http", cfg["http_rounds"], cfg["seconds"], ORDER)
    rounds("https", cfg["https_rounds"], cfg["seconds"], PROXIES)
    rounds("handshake", cfg["handshake_rounds"], cfg["handshake_seconds"], PROXIES)
    rounds("resumed", cfg["resumed_rounds"], cfg["resumed_seconds"], PROXIES)
    rounds("h2", cfg["h2_rounds"], cfg["h2_seconds"], H2_PROXIES)

    for n in H2_PROXIES:
        t = targets[n]
        for kind in ("http", "https", "h2"):
            if t.rss_after[kind]:
                t.memory["rss_after_%s_kib" % kind] = t.rss_after[kind][-1]
        last = t.rss_after["https"] or t.rss_after["http"]
        if last:
            t.memory["rss_after_load_kib"] = last[-1]

    # ---------------------------------------------------------------- report
    summary = {}
    for n in ALL:
        t = targets[n]
        summary[n] = {k: summarize(t.runs[k]) for k in ("http", "https", "handshake", "resumed", "h2")}

    def get(n, kind, key):
        s = summary[n][kind]
        return s[key] if s else None

    def memget(n, key):
        m = targets[n].memory
        if key in ("per_conn_bytes",):
            ic = m.get("idle_connections") or {}
            return ic.get(key)
        if key == "rss_conns_kib":
            return (m.get("idle_connections") or {}).get("rss_conns_kib")
        return m.get(key)

    def why(n, kind):
        t = targets[n]
        if t.status != "ok" and not t.runs[kind]:
            return t.reason.splitlines()[0]
        if kind != "http" and t.https_status != "ok":
            return t.https_reason.splitlines()[0]
        if kind == "h2" and t.h2_status != "ok":
            return t.h2_reason.splitlines()[0]
        return None

    def rows(kind):
        return ORDER if kind == "http" else H2_PROXIES if kind == "h2" else PROXIES

    lines = []
    out = lines.append
    out("")
    out("Switchyard side-by-side benchmark, %s mode, %s" % (cfg["mode"], stamp))
    out("wrk -t1 -c64 keep-alive, header X-Postfacto-Version: 4.1.0 (routed to upstream A); "
        "%ds x %d round(s), median shown" % (cfg["seconds"], cfg["http_rounds"]))
    out("placement: %s" % placement)
    out("access logs: off in every proxy and upstream (Switchyard: log: {access: false})")
    titles = {"http": "HTTP keep-alive", "https": "HTTPS keep-alive (TLS terminated by the proxy)",
              "handshake": "HTTPS new connection per request, full handshakes (bench/tlsload -c64: "
                           "no session resumed; req/s = full TLS handshakes/s), %ds x %d" % (
                               cfg["handshake_seconds"], cfg["handshake_rounds"]),
              "resumed": "HTTPS new connection per request, resumed sessions (wrk -H 'Connection: close'"
                         ": wrk resumes with the server's ticket), %ds x %d" % (
                             cfg["resumed_seconds"], cfg["resumed_rounds"]),
              "h2": "HTTP/2 over TLS (h2load -c16 -m10 -t1: 16 connections x 10 streams; p50/p99 from its "
                    "per-request log), %ds x %d; h2o routes through an mruby handler" % (
                        cfg["h2_seconds"], cfg["h2_rounds"])}
    for kind in ("http", "https", "handshake", "resumed", "h2"):
        out("")
        out(titles[kind])
        out("  %-22s %10s %9s %9s %10s %9s %11s" % ("", "req/s", "p50 ms", "p99 ms", "cpu us/req",
                                                     "segs/req" if kind != "handshake" else "",
                                                     "rss KiB" if kind in ("http", "https", "h2") else ""))
        if kind in ("http", "https", "h2"):
            out("  (rss KiB: summed over the server's processes right after its last run in this table;")
            out("   segs/req: TCP segments the whole machine sent per request, client and upstream included)")
        for n in rows(kind):
            w = why(n, kind)
            if w and not summary[n][kind]:
                out("  %-22s n/a (%s)" % (LABEL[n], w))
                continue
            s = summary[n][kind]
            if not s:
                out("  %-22s n/a (no successful run)" % LABEL[n])
                continue
            rss = ""
            if kind in ("http", "https", "h2") and n != "direct":
                rss = fmt(memget(n, "rss_after_%s_kib" % kind), "d")
            out("  %-22s %10.0f %9.3f %9.3f %10s %9s %11s%s" % (
                LABEL[n], s["rps"], s["p50_ms"], s["p99_ms"], fmt(s["cpu_us_per_req"], ".1f"),
                fmt(s.get("tcp_segs_per_req"), ".2f") if kind != "handshake" else "", rss,
                "  errors=%d" % s["errors"] if s["errors"] else ""))
        spread = ["%s %.2f-%.2f" % (LABEL[n], summary[n][kind]["p99_ms_min"], summary[n][kind]["p99_ms_max"])
                  for n in rows(kind)
                  if summary[n][kind] and summary[n][kind]["rounds"] > 1
                  and summary[n][kind]["p99_ms_min"] is not None]
        if spread:
            out("  p99 ms over the rounds, min-max: " + ", ".join(spread))
    out("")
    out("Where the CPU goes (us per request, medians; client = the load client, upstream = upstream A;")
    out("in kernel = the part of the proxy's own CPU spent in system calls and the network stack;")
    out("busy = share of the %d CPUs the three used together during the run)" % ncpu)
    for kind in ("http", "https", "h2"):
        out("  %-8s %-22s %9s %9s %9s %9s %9s %7s" % (kind, "", "proxy", "in kernel", "client", "upstream",
                                                     "total", "busy"))
        best = None
        for n in rows(kind):
            sm = summary[n][kind]
            if not sm or sm["cpu_us_per_req"] is None or sm["client_cpu_us_per_req"] is None:
                continue
            parts = [sm["cpu_us_per_req"], sm["client_cpu_us_per_req"], sm["upstream_cpu_us_per_req"] or 0.0]
            total = sum(parts)
            if n in (H2_PEERS if kind == "h2" else ("nginx", "haproxy")) and (best is None or sm["rps"] > best[1]):
                best = (n, sm["rps"], total)
            out("  %-8s %-22s %9.1f %9s %9.1f %9s %9.1f %6.0f%%" % (
                "", LABEL[n], parts[0], fmt(sm.get("kernel_cpu_us_per_req"), ".1f"), parts[1],
                fmt(sm["upstream_cpu_us_per_req"], ".1f") if n != "direct" else "-",
                total, 100.0 * total * sm["rps"] / 1e6 / ncpu))
        sy = summary["switchyard"][kind]
        if best and sy and sy["client_cpu_us_per_req"] is not None:
            others = sy["client_cpu_us_per_req"] + (sy["upstream_cpu_us_per_req"] or 0.0)
            out("  %-8s with the machine saturated, 1.3x %s's req/s needs a total of %.1f us/req, so a"
                % ("", best[0], best[2] / 1.3))
            out("  %-8s proxy cost of at most %.1f us/req beside this client and upstream (Switchyard: %.1f,"
                % ("", best[2] / 1.3 - others, sy["cpu_us_per_req"]))
            out("  %-8s of which %s in the kernel)" % ("", fmt(sy.get("kernel_cpu_us_per_req"), ".1f")))
            direct = summary["direct"].get(kind)
            if direct and direct.get("kernel_cpu_us_per_req") is not None:
                k = direct["kernel_cpu_us_per_req"]
                out("  %-8s the direct upstream spends %.1f us/req in the kernel on its one socket; a proxy"
                    % ("", k))
                out("  %-8s serves two sockets per request (client and upstream): about %.1f us/req" % ("", 2 * k))
        # A proxy with cores of its own is bound by its own CPU: requests per
        # CPU-second of the proxy alone are what it would serve there (an estimate:
        # on loopback the sender's CPU also pays for the peer's receive path).
        per_core = ["%s %.2fx" % (LABEL[n], summary[n][kind]["cpu_us_per_req"] / sy["cpu_us_per_req"])
                    for n in (H2_PEERS if kind == "h2" else ("nginx", "haproxy"))
                    if sy and sy["cpu_us_per_req"] and summary[n][kind]
                    and summary[n][kind]["cpu_us_per_req"]]
        if per_core:
            out("  %-8s requests per CPU-second of the proxy alone, Switchyard against: %s"
                % ("", ", ".join(per_core)))
    out("")
    out("Memory (RSS summed over all processes of each server, KiB)")
    out("  %-22s %10s %11s %13s %12s" % ("", "idle", "after load", "%d idle conns" % cfg["idle_connections"],
                                         "bytes/conn"))
    for n in ORDER:
        t = targets[n]
        if "rss_idle_kib" not in t.memory:
            out("  %-22s n/a (%s)" % (LABEL[n], (t.reason or "?").splitlines()[0]))
            continue
        ic = t.memory.get("idle_connections") or {}
        conns = ic.get("rss_conns_kib")
        out("  %-22s %10d %11s %13s %12s%s" % (
            LABEL[n], t.memory["rss_idle_kib"], fmt(t.memory.get("rss_after_load_kib"), "d"),
            fmt(conns, "d"), fmt(ic.get("per_conn_bytes"), "d"),
            "  (" + ic["warning"] + ")" if ic.get("warning") else
            ("  (" + ic["error"] + ")" if ic.get("error") else "")))
    out("")
    out("Memory with idle HTTP/2 connections (TLS, one answered stream each), right after the test above:")
    out("  %-22s %10s %13s %12s" % ("", "before", "%d h2 conns" % cfg["h2_idle_connections"], "bytes/conn"))
    for n in H2_PROXIES:
        t = targets[n]
        ic = t.memory.get("idle_connections_h2")
        if not ic or "rss_conns_kib" not in ic:
            w = why(n, "h2") or (ic or {}).get("error") or "not measured"
            out("  %-22s n/a (%s)" % (LABEL[n], w.splitlines()[0]))
            continue
        out("  %-22s %10d %13d %12s%s" % (
            LABEL[n], ic["rss_before_kib"], ic["rss_conns_kib"], fmt(ic.get("per_conn_bytes"), "d"),
            "  (" + ic["warning"] + ")" if ic.get("warning") else ""))

    def h2mem(n):
        return (targets[n].memory.get("idle_connections_h2") or {}).get("per_conn_bytes")

    ratios = {}
    for sy, base in [(sy, base) for sy in SY_BACKEND for base in ("nginx", "haproxy", "caddy", "h2o", "direct")]:
        r = {
            "http_rps": ratio(get(sy, "http", "rps"), get(base, "http", "rps")),
            "http_p99": ratio(get(sy, "http", "p99_ms"), get(base, "http", "p99_ms")),
            "http_cpu_per_req": ratio(get(sy, "http", "cpu_us_per_req"),
                                      get(base, "http", "cpu_us_per_req")),
        }
        if base != "direct":
            r.update({
                "h2_rps": ratio(get(sy, "h2", "rps"), get(base, "h2", "rps")),
                "h2_p99": ratio(get(sy, "h2", "p99_ms"), get(base, "h2", "p99_ms")),
                "h2_cpu_per_req": ratio(get(sy, "h2", "cpu_us_per_req"),
                                        get(base, "h2", "cpu_us_per_req")),
                "h2_bytes_per_conn": ratio(h2mem(sy), h2mem(base)),
            })
        if base != "direct" and base != "h2o":
            r.update({
                "https_rps": ratio(get(sy, "https", "rps"), get(base, "https", "rps")),
                "https_p99": ratio(get(sy, "https", "p99_ms"), get(base, "https", "p99_ms")),
                "handshakes": ratio(get(sy, "handshake", "rps"), get(base, "handshake", "rps")),
                "handshake_cpu": ratio(get(sy, "handshake", "cpu_us_per_req"),
                                       get(base, "handshake", "cpu_us_per_req")),
                "resumed": ratio(get(sy, "resumed", "rps"), get(base, "resumed", "rps")),
                "rss_idle": ratio(memget(sy, "rss_idle_kib"), memget(base, "rss_idle_kib")),
                "bytes_per_conn": ratio(memget(sy, "per_conn_bytes"), memget(base, "per_conn_bytes")),
            })
        ratios["%s/%s" % (sy, base)] = r
    out("")
    out("Ratios (switchyard / other; req/s higher is better, p99, cpu and memory lower is better)")
    cols = ["http_rps", "http_p99", "http_cpu_per_req", "https_rps", "https_p99", "handshakes",
            "handshake_cpu", "resumed", "rss_idle", "bytes_per_conn"]
    heads = ["http req/s", "http p99", "http cpu", "https req/s", "https p99", "handshakes",
             "hs cpu", "resumed", "rss idle", "bytes/conn"]
    out("  %-24s" % "" + "".join("%12s" % h for h in heads))
    for k, r in ratios.items():
        if not k.endswith("/h2o"):
            out("  %-24s" % k + "".join("%12s" % fmt(r.get(c), ".2f") for c in cols))
    io = {k: ratio(get("switchyard_uring", kind, key), get("switchyard", kind, key))
          for k, kind, key in (("http_rps", "http", "rps"), ("http_p99", "http", "p99_ms"),
                               ("http_cpu_per_req", "http", "cpu_us_per_req"),
                               ("https_rps", "https", "rps"), ("https_p99", "https", "p99_ms"),
                               ("h2_rps", "h2", "rps"), ("h2_p99", "h2", "p99_ms"),
                               ("h2_cpu_per_req", "h2", "cpu_us_per_req"))}
    io.update(bytes_per_conn=ratio(memget("switchyard_uring", "per_conn_bytes"),
                                   memget("switchyard", "per_conn_bytes")),
              h2_bytes_per_conn=ratio(h2mem("switchyard_uring"), h2mem("switchyard")))
    out("  %-24s" % "io_uring/epoll" + "".join("%12s" % fmt(io.get(c), ".2f") for c in cols))
    cols2 = ["h2_rps", "h2_p99", "h2_cpu_per_req", "h2_bytes_per_conn"]
    out("  %-24s" % "" + "".join("%12s" % h for h in ["h2 req/s", "h2 p99", "h2 cpu", "h2 bytes/c"]))
    for k, r in ratios.items():
        if not k.endswith("/direct"):
            out("  %-24s" % k + "".join("%12s" % fmt(r.get(c), ".2f") for c in cols2))
    out("  %-24s" % "io_uring/epoll" + "".join("%12s" % fmt(io.get(c), ".2f") for c in cols2))
    ratios["switchyard_uring/switchyard"] = io
    if targets["switchyard"].status != "ok" and not targets["switchyard"].runs["http"]:
        out("  (switchyard n/a: %s)" % targets["switchyard"].reason.splitlines()[0])
    elapsed = time.monotonic() - started
    out("")
    out("load average before %.2f, after %.2f; %.0f s; details in %s" % (
        load_before[0], os.getloadavg()[0], elapsed, run_dir))

    report = "\n".join(lines)
    log(report)
    with open(os.path.join(run_dir, "report.txt"), "w") as f:
        f.write(report + "\n")

    data = {
        "timestamp": stamp,
        "config": cfg,
        "placement": placement,
        "host": {"cpus": ncpu, "kernel": os.uname().release,
                 "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "tools": {"wrk": tool_version(["wrk", "-v"]), "openssl": tool_version(["openssl", "version"]),
                  "h2load": tool_version(["h2load", "--version"])},
        "ports": ports,
        "run_dir": run_dir,
        "elapsed_s": round(elapsed, 1),
        "targets": {},
        "ratios": ratios,
    }
    for n in ALL:
        t = targets[n]
        data["targets"][n] = {
            "status": t.status, "reason": t.reason,
            "https_status": t.https_status, "https_reason": t.https_reason,
            "h2_status": t.h2_status, "h2_reason": t.h2_reason,
            "version": t.version,
            "summary": summary[n], "runs": t.runs, "memory": t.memory,
        }
    path = os.path.join(args.results, "%s.json" % stamp)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    shutil.copyfile(path, os.path.join(args.results, "latest.json"))
    log("results: %s (also %s)" % (path, os.path.join(args.results, "latest.json")))


if __name__ == "__main__":
    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except Exception:  # the harness itself broke
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        Proc.stop_all()
    sys.exit(code)
