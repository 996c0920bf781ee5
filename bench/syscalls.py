#!/usr/bin/python3
"""System calls and CPU per request of Switchyard on each event loop backend.

    bench/syscalls.py [--seconds 5] [--binary build/switchyard] [--backends epoll,io_uring]
                      [--proto http|https|h2]

One upstream (nginx, as in bench/run.sh), one Switchyard per backend (2 workers, one
listener), wrk -t1 -c64 keep-alive through it: over plain HTTP (the default), over HTTPS
(--proto https, an ECDSA P-256 certificate made with openssl, TLS 1.3), or h2load -c64 -m1
over HTTP/2 on TLS (--proto h2). During the load `perf stat` counts the
proxy's system calls (the raw_syscalls:sys_enter tracepoint: every entry into the
kernel, whatever the call) and its io_uring_enter and epoll_wait calls; the proxy's
user and kernel CPU come from /proc/<pid>/stat. Figures are per request. The load
client is pinned to CPU 1 like bench/run.sh's (BENCH_CLIENT_CPU, '' = no pinning).
See bench/README.md.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, seconds=10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def cpu_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def wrk(port, seconds, cpu, proto):
    if proto == "h2":
        argv = ["h2load", "-c64", "-m1", "-D%d" % seconds, "-H", "X-Postfacto-Version: 4.1.0",
                "https://127.0.0.1:%d/" % port]
    else:
        argv = ["wrk", "-t1", "-c64", "-d%ds" % seconds, "-H", "X-Postfacto-Version: 4.1.0",
                "%s://127.0.0.1:%d/" % (proto, port)]
    if cpu:
        argv = ["taskset", "-c", cpu] + argv
    out = subprocess.run(argv, stdout=subprocess.PIPE, check=True).stdout.decode()
    if proto == "h2":
        m = re.search(r"requests: \d+ total, \d+ started, (\d+) done", out)
        rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    else:
        m = re.search(r"(\d+) requests in", out)
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return int(m.group(1)), float(rps.group(1))


def make_cert(tmp):
    crt, key = os.path.join(tmp, "bench.crt"), os.path.join(tmp, "bench.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", crt],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return crt, key


def measure(binary, backend, upstream_port, seconds, cpu, tmp, proto):
    port = free_port()
    cfg = os.path.join(tmp, "switchyard-%s.yaml" % backend)
    if proto == "http":
        listen = 'listen: {http: "127.0.0.1:%d"}\n' % port
    else:
        crt, key = make_cert(tmp)
        listen = ('listen: {https: "127.0.0.1:%d"}\ntls: {certificates: [{cert: "%s", key: "%s"}]}\n'
                  % (port, crt, key))
    with open(cfg, "w") as f:
        f.write('workers: 2\n%slog: {access: false, level: warn}\n'
                'upstreams:\n  a: {servers: ["127.0.0.1:%d"], keepalive: 128}\n'
                'sites:\n  - hosts: ["*"]\n    version: {header: X-Postfacto-Version, '
                'routes: {"4.1.0": a}, default: "4.1.0"}\n' % (listen, upstream_port))
    p = subprocess.Popen([binary, "--io-backend=" + backend, "-c", cfg], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(tmp, "switchyard-%s.log" % backend), "w"))
    try:
        if not wait_port(port):
            raise RuntimeError("switchyard (%s) did not start" % backend)
        wrk(port, 1, cpu, proto)  # warm-up: upstream connections pooled, buffers mapped
        # 1. CPU without a tracer attached.
        u0, s0 = cpu_of(p.pid)
        n, rps = wrk(port, seconds, cpu, proto)
        u1, s1 = cpu_of(p.pid)
        # 2. System calls, counted by the kernel's tracepoints during a second run.
        events = "raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait"
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", events, "-p", str(p.pid), "--",
                                 "sleep", str(seconds + 1)], stderr=subprocess.PIPE)
        time.sleep(0.3)
        n2, _ = wrk(port, seconds, cpu, proto)
        counts = {}
        for line in perf.communicate()[1].decode().splitlines():
            f = line.split(",")
            if len(f) > 2 and f[0].isdigit():
                counts[f[2]] = int(f[0])
        return {
            "backend": backend, "rps": rps, "requests": n,
            "user_us": (u1 - u0) * 1e6 / n, "kernel_us": (s1 - s0) * 1e6 / n,
            "syscalls": counts.get("raw_syscalls:sys_enter", 0) / n2,
            "io_uring_enter": counts.get("syscalls:sys_enter_io_uring_enter", 0) / n2,
            "epoll_wait": counts.get("syscalls:sys_enter_epoll_wait", 0) / n2,
        }
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--binary", default=os.path.join(BENCH, "..", "build", "switchyard"))
    ap.add_argument("--backends", default="epoll,io_uring")
    ap.add_argument("--proto", choices=("http", "https", "h2"), default="http")
    args = ap.parse_args()
    cpu = os.environ.get("BENCH_CLIENT_CPU", "1") if (os.cpu_count() or 1) > 1 else ""
    for tool in ("nginx", "h2load" if args.proto == "h2" else "wrk", "perf"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            sys.exit("syscalls.py: %s is needed" % tool)
    tmp = tempfile.mkdtemp(prefix="sy-syscalls-")
    up_port = free_port()
    with open(os.path.join(BENCH, "configs", "upstream-nginx.conf")) as f:
        conf = f.read()
    for k, v in {"RUN": tmp, "NAME": "A", "PORT": up_port, "NOFILE": 4096}.items():
        conf = conf.replace("@%s@" % k, str(v))
    os.makedirs(os.path.join(tmp, "upstream-A-tmp"))
    with open(os.path.join(tmp, "upstream.conf"), "w") as f:
        f.write(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    up = subprocess.Popen([nginx, "-p", tmp, "-e", os.path.join(tmp, "upstream.err"), "-c",
                           os.path.join(tmp, "upstream.conf")], stderr=subprocess.DEVNULL)
    try:
        if not wait_port(up_port):
            sys.exit("syscalls.py: the upstream did not start")
        print("%-10s %10s %10s %10s %10s %15s %11s" % ("backend", "req/s", "user us", "kernel us",
                                                      "syscalls", "io_uring_enter", "epoll_wait"))
        print("%-10s %10s %10s %10s %10s %15s %11s" % ("", "", "/req", "/req", "/req", "/req", "/req"))
        for b in args.backends.split(","):
            r = measure(os.path.abspath(args.binary), b, up_port, args.seconds, cpu, tmp, args.proto)
            print("%-10s %10.0f %10.2f %10.2f %10.2f %15.3f %11.3f" % (
                b, r["rps"], r["user_us"], r["kernel_us"], r["syscalls"], r["io_uring_enter"],
                r["epoll_wait"]), flush=True)
    finally:
        up.send_signal(signal.SIGQUIT)
        up.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
