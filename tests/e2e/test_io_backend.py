"""The event loop backend: the io_backend key, --io-backend and SWITCHYARD_IO_BACKEND, which one
wins, what the start line says, that requests are served on each (the whole suite also runs
once per backend: make e2e, make e2e-uring), and that TLS runs on io_uring's completion I/O."""

import os
import signal
import subprocess
import time

import pytest

from certs import TestCA
from h2util import H2Client
from helpers import build_request, free_port, make_config, wait_for
from tlsutil import TlsClient, client_ctx, tls_config

NO_ENV = {"SWITCHYARD_IO_BACKEND": ""}  # an empty variable counts as unset


def uring_allowed(binary, tmp_path):
    """Whether a gateway forced onto io_uring starts here (the kernel or a seccomp profile may
    refuse io_uring)."""
    path = tmp_path / "probe.yaml"
    path.write_text("listen: {http: \"127.0.0.1:%d\"}\nupstreams: {a: {servers: [\"127.0.0.1:1\"]}}\n"
                    "sites: [{hosts: [\"*\"], upstream: a}]\n" % free_port())
    p = subprocess.Popen([binary, "--io-backend=io_uring", "-c", str(path)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=dict(os.environ, **NO_ENV))
    try:
        p.wait(1.0)
        return False, p.stderr.read().decode()
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        return True, ""


def start_line(gw):
    return wait_for(lambda: [l for l in gw.stderr_text().splitlines() if "serving" in l], 5, 0.05,
                    "the start line")[0]


@pytest.mark.parametrize("key,expect", [(None, None), ("epoll", "epoll"), ("io_uring", "io_uring"),
                                        ("auto", None)])
def test_key_picks_the_backend_and_requests_are_served(gateway, upstream, switchyard_bin, tmp_path,
                                                       key, expect):
    if expect != "epoll":  # io_uring, or auto (the default): io_uring where it is allowed
        ok, why = uring_allowed(switchyard_bin, tmp_path)
        if expect == "io_uring" and not ok:
            pytest.skip("io_uring refused here: " + why.strip())
        expect = expect or ("io_uring" if ok else "epoll")
    up = upstream("one")
    extra = {"io_backend": key} if key else None
    gw = gateway(make_config(free_port(), free_port(), {"one": [up.addr]},
                             [{"hosts": ["plain.test"], "upstream": "one"}], workers=2, extra=extra),
                 env=NO_ENV)
    assert start_line(gw).endswith(", " + expect), gw.stderr_text()
    if key in (None, "auto") and expect == "epoll":
        assert "io_uring is not available here" in gw.stderr_text()
    for _ in range(20):
        r = gw.get("/x")
        assert r.status == 200, r


def test_option_beats_variable_beats_key(switchyard_bin, tmp_path):
    cfg = tmp_path / "sy.yaml"
    port = free_port()
    cfg.write_text("io_backend: io_uring\nlisten: {http: \"127.0.0.1:%d\"}\n"
                   "upstreams: {a: {servers: [\"127.0.0.1:1\"]}}\nsites: [{hosts: [\"*\"], upstream: a}]\n"
                   % port)
    for argv, env, want in (([], {"SWITCHYARD_IO_BACKEND": "epoll"}, "epoll"),
                            (["--io-backend=epoll"], {"SWITCHYARD_IO_BACKEND": "io_uring"}, "epoll")):
        err = tmp_path / "err.log"
        with open(err, "wb") as f:
            p = subprocess.Popen([switchyard_bin, *argv, "-c", str(cfg)], stdout=subprocess.DEVNULL,
                                 stderr=f, env=dict(os.environ, **env))
        try:
            line = wait_for(lambda: [l for l in err.read_text().splitlines() if "serving" in l], 5, 0.05,
                            "the start line")[0]
            assert line.endswith(", " + want), line
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(10)


@pytest.mark.parametrize("argv,env", [(["--io-backend=kqueue"], {}), ([], {"SWITCHYARD_IO_BACKEND": "select"})])
def test_unknown_backend_is_refused(switchyard_bin, tmp_path, argv, env):
    cfg = tmp_path / "sy.yaml"
    cfg.write_text("listen: {http: \"127.0.0.1:%d\"}\nupstreams: {a: {servers: [\"127.0.0.1:1\"]}}\n"
                   "sites: [{hosts: [\"*\"], upstream: a}]\n" % free_port())
    p = subprocess.run([switchyard_bin, *argv, "-c", str(cfg)], capture_output=True, text=True, timeout=10,
                       env=dict(os.environ, **env))
    assert p.returncode == 2, p
    assert "unknown I/O backend" in p.stderr, p.stderr


def test_bad_key_value_names_file_and_line(switchyard_bin, tmp_path):
    cfg = tmp_path / "sy.yaml"
    cfg.write_text("workers: 1\nio_backend: poll\nlisten: {http: \"127.0.0.1:1\"}\n"
                   "upstreams: {a: {servers: [\"127.0.0.1:1\"]}}\nsites: [{hosts: [\"*\"], upstream: a}]\n")
    p = subprocess.run([switchyard_bin, "-t", "-c", str(cfg)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1, p
    assert "%s:2:" % cfg in p.stderr and "io_backend" in p.stderr, p.stderr


# ---- the fallback where a seccomp profile refuses io_uring ----
#
# Container runtimes' default profiles (containerd 2.0, Docker 25, podman's) refuse io_uring_setup,
# io_uring_enter and io_uring_register (EPERM, or ENOSYS in podman's). The same filter is installed
# here in the child before it runs the gateway, so `auto` is tested against the refusal it meets in
# a cluster; the image test meets podman's own profile (tests/acme/test_shipped_journey.py).

_SYS_IO_URING = (425, 426, 427)  # io_uring_setup, _enter, _register (the same numbers on x86_64 and arm64)


def _refuse_io_uring():
    import ctypes
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
    BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
    SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, EPERM = 0x7FFF0000, 0x00050000, 1

    def insn(code, jt, jf, k):
        return struct.pack("HBBI", code, jt, jf, k)

    prog = [insn(BPF_LD_W_ABS, 0, 0, 0)]  # seccomp_data.nr
    for i, nr in enumerate(_SYS_IO_URING):
        prog.append(insn(BPF_JEQ_K, len(_SYS_IO_URING) - i, 0, nr))
    prog.append(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM))
    code = b"".join(prog)
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.addressof(buf))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def _backend_config(tmp_path, port, upstream_addr, key):
    cfg = tmp_path / ("sy-%s.yaml" % key)
    cfg.write_text("io_backend: %s\nworkers: 2\nlisten: {http: \"127.0.0.1:%d\"}\n"
                   "upstreams: {a: {servers: [\"%s\"]}}\nsites: [{hosts: [\"*\"], upstream: a}]\n"
                   % (key, port, upstream_addr))
    return cfg


def test_auto_falls_back_to_epoll_when_seccomp_refuses_io_uring(switchyard_bin, upstream, tmp_path):
    import http.client

    up = upstream("one")
    port = free_port()
    cfg = _backend_config(tmp_path, port, up.addr, "auto")
    err = tmp_path / "err.log"
    with open(err, "wb") as f:
        p = subprocess.Popen([switchyard_bin, "-c", str(cfg)], stdout=subprocess.DEVNULL, stderr=f,
                             env=dict(os.environ, **NO_ENV), preexec_fn=_refuse_io_uring)
    try:
        line = wait_for(lambda: [l for l in err.read_text().splitlines() if "serving" in l], 5, 0.05,
                        "the start line")[0]
        assert line.endswith(", epoll"), line
        text = err.read_text()
        assert "io_uring is not available here" in text and "Operation not permitted" in text, text
        for _ in range(20):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/x")
            assert c.getresponse().status == 200
            c.close()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0


def test_forced_io_uring_refused_by_seccomp_fails_with_the_reason(switchyard_bin, tmp_path):
    cfg = _backend_config(tmp_path, free_port(), "127.0.0.1:1", "io_uring")
    p = subprocess.run([switchyard_bin, "-c", str(cfg)], capture_output=True, text=True, timeout=10,
                       env=dict(os.environ, **NO_ENV), preexec_fn=_refuse_io_uring)
    assert p.returncode != 0, p
    assert "io_uring" in p.stderr and "Operation not permitted" in p.stderr, p.stderr


def read_write_calls(pid):
    """read(2)-family and write(2)-family system calls the process made so far (all threads):
    /proc/PID/io counts read, readv, pread, write, writev... (OpenSSL's socket BIO uses read(2)
    and write(2)); io_uring's receives and sends are not counted."""
    with open("/proc/%d/io" % pid) as f:
        fields = dict(line.split(": ") for line in f.read().splitlines())
    return int(fields["syscr"]) + int(fields["syscw"])


def test_tls_runs_on_completion_io(gateway, upstream, switchyard_bin, tmp_path):
    """Under io_uring, HTTPS and HTTP/2 over TLS move their records through the ring (a callback
    BIO over the completion I/O queues): keep-alive requests on a TLS connection make no read(2)
    nor write(2), where the readiness model made one of each per request."""
    ok, why = uring_allowed(switchyard_bin, tmp_path)
    if not ok:
        pytest.skip("io_uring refused here: " + why.strip())
    ca = TestCA(tmp_path / "pki")
    leaf = ca.issue("a", ["a.test"], key="ec")
    up = upstream("one")
    https = free_port()
    cfg = tls_config(free_port(), https, free_port(), {"one": [up.addr]},
                     [{"hosts": ["*"], "upstream": "one"}], [leaf], workers=1,
                     log={"access": False, "level": "warn"}, extra={"io_backend": "io_uring"})
    gw = gateway(cfg, env=NO_ENV)
    n = 100

    c = TlsClient(https, "a.test", client_ctx(ca.cert))
    c.send(build_request("GET", "/warm", "a.test"))
    assert c.read_response().status == 200
    before = read_write_calls(gw.pid)
    for i in range(n):
        c.send(build_request("GET", "/k%d" % i, "a.test"))
        assert c.read_response().status == 200
    h1 = read_write_calls(gw.pid) - before
    c.close()

    h = H2Client(https, ca=ca.cert)
    assert h.get("/warm").status == 200
    before = read_write_calls(gw.pid)
    for i in range(n):
        assert h.get("/s%d" % i).status == 200
    h2 = read_write_calls(gw.pid) - before
    h.close()
    assert h1 < n // 10 and h2 < n // 10, \
        "read/write calls for %d requests: %d (HTTP/1.1), %d (h2)" % (n, h1, h2)
