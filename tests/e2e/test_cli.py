"""Command line: --version, --help, bad options, -t (config check), and the configuration
keys named in help, messages and documentation as the reference names them."""

import json
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from config_keys import (REPO, c_string_literals, keys_in_text, normalize,  # noqa: E402
                         reference_keys)

GOOD = """\
workers: 2
listen: {http: "127.0.0.1:18080", admin: "127.0.0.1:19901"}
limits: {max_connections: 10000, max_request_head: 16k, max_headers: 100, max_uri: 8k, max_body: 0}
timeouts: {client_header: 10s, client_body: 60s, keepalive: 75s, upstream_connect: 3s, upstream_response: 60s, tunnel_idle: 1h, drain: 30s}
log: {access: true, level: info}
upstreams:
  v1: {servers: ["127.0.0.1:3001"], balance: least_conn, keepalive: 64, down_time: 10s, resolve_interval: 30s}
  v2: {servers: ["127.0.0.1:3002", "localhost:3003"], balance: round_robin}
sites:
  - hosts: [retro.example.org, "*.example.org"]
    version: {header: X-Postfacto-Version, query: postfacto_version, cookie: postfacto_version, routes: {"4.1.0": v1, "4.2.0": v2}, default: "4.2.0"}
  - hosts: [plain.test]
    upstream: v1
"""


def run(binary, *args, timeout=10):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def check(binary, tmp_path, text, name="sy.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path), run(binary, "-t", "-c", str(path))


def test_version(switchyard_bin):
    p = run(switchyard_bin, "--version")
    assert p.returncode == 0, p
    assert re.search(r"switchyard\s+v?\d+\.\d+\.\d+", p.stdout + p.stderr), p


def test_help(switchyard_bin):
    p = run(switchyard_bin, "--help")
    assert p.returncode == 0, p
    out = p.stdout + p.stderr
    assert "-c" in out and "-t" in out, out
    assert re.search(r"usage", out, re.I), out


def parser_knows(binary, tmp_path, key):
    """True when `switchyard -t` knows the dotted key (no list index, no pool name): a file
    setting it to a wrong value fails with an error other than "unknown key"."""
    cfg = {"listen": {"http": "127.0.0.1:18080"},
           "upstreams": {"v1": {"servers": ["127.0.0.1:3001"]}},
           "sites": [{"hosts": ["plain.test"], "upstream": "v1"}]}
    node = cfg
    *parents, last = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = ["not", "a", "value"]
    _, p = check(binary, tmp_path, json.dumps(cfg), name="key.yaml")
    assert p.returncode == 1, (key, p)
    return f'unknown key "{last}"' not in p.stdout + p.stderr


def test_help_names_keys_as_the_reference_and_the_parser_do(switchyard_bin, tmp_path):
    out = run(switchyard_bin, "--help").stdout
    keys = keys_in_text(out)
    assert "timeouts.drain" in keys, out
    reference = reference_keys()
    for key in keys:
        assert "[" not in key and normalize(key) == key, f"--help names {key}: write it plainly"
        assert key in reference, f"--help names {key}, not in docs/configuration.md"
        assert parser_knows(switchyard_bin, tmp_path, key), f"--help names {key}, unknown to -t"
    # the check itself tells a wrong name from a right one
    assert not parser_knows(switchyard_bin, tmp_path, "timeouts.drain_ms")


def test_messages_and_documents_name_keys_as_the_reference_does():
    reference = reference_keys()
    assert {"timeouts.drain", "tls.redirect_port", "sites.version.default",
            "tls.certificates.key", "upstreams.keepalive"} <= reference
    named = []
    for path in sorted((REPO / "src").rglob("*.[ch]")):
        named += [(path, k) for lit in c_string_literals(path) for k in keys_in_text(lit)]
    assert len(named) > 50, "the key pattern no longer finds the keys in src/"
    texts = [REPO / "README.md", REPO / "deploy" / "README.md", *sorted(REPO.glob("examples/*"))]
    texts += sorted((REPO / "docs").rglob("*.md"))
    for path in texts:
        named += [(path, k) for k in keys_in_text(path.read_text())]
    unknown = sorted({(str(p.relative_to(REPO)), k) for p, k in named
                      if normalize(k) not in reference})
    assert not unknown, f"keys not in docs/configuration.md: {unknown}"


@pytest.mark.parametrize("args", [["--no-such-option"], ["-Z"], ["-c"]])
def test_bad_option_exits_2_with_usage(switchyard_bin, args):
    p = run(switchyard_bin, *args)
    assert p.returncode == 2, p
    assert re.search(r"usage", p.stderr, re.I), p


def test_check_good_file(switchyard_bin, tmp_path):
    path, p = check(switchyard_bin, tmp_path, GOOD)
    assert p.returncode == 0, p
    assert re.search(r"\bok\b", p.stdout + p.stderr, re.I), p
    assert "sy.yaml" in p.stdout + p.stderr, p


def test_check_does_not_resolve_names(switchyard_bin, tmp_path):
    text = GOOD.replace('"127.0.0.1:3001"', "postfacto-v1.postfacto.svc.cluster.local:80") \
               .replace('"localhost:3003"', '"postfacto-v2.postfacto.svc.cluster.local:80"')
    assert "svc.cluster.local" in text
    path, p = check(switchyard_bin, tmp_path, text)
    assert p.returncode == 0, p


def test_check_workers_auto(switchyard_bin, tmp_path):
    path, p = check(switchyard_bin, tmp_path, GOOD.replace("workers: 2", "workers: auto"))
    assert p.returncode == 0, p


# Each case: the file text, with the offending line marked by "#<-".
BAD = {
    "unknown_top_level_key": GOOD + "colour: blue  #<-\n",
    "unknown_upstream_key": GOOD.replace(
        '  v2: {servers: ["127.0.0.1:3002", "localhost:3003"], balance: round_robin}',
        '  v2:\n    servers: ["127.0.0.1:3002"]\n    weight_of_the_world: 3  #<-'),
    "unknown_upstream_name": GOOD.replace("    upstream: v1", "    upstream: nowhere  #<-"),
    "unknown_upstream_in_routes": GOOD.replace(
        '    version: {header: X-Postfacto-Version, query: postfacto_version, cookie: postfacto_version, routes: {"4.1.0": v1, "4.2.0": v2}, default: "4.2.0"}',
        '    version:\n      header: X-Postfacto-Version\n      routes:\n        "4.1.0": v1\n'
        '        "4.2.0": v9  #<-\n      default: "4.2.0"'),
    "default_not_a_route": GOOD.replace(
        '    version: {header: X-Postfacto-Version, query: postfacto_version, cookie: postfacto_version, routes: {"4.1.0": v1, "4.2.0": v2}, default: "4.2.0"}',
        '    version:\n      header: X-Postfacto-Version\n      routes:\n        "4.1.0": v1\n'
        '      default: "5.0.0"  #<-'),
    "bad_listen_address": GOOD.replace(
        'listen: {http: "127.0.0.1:18080", admin: "127.0.0.1:19901"}',
        'listen:\n  http: "127.0.0.1:notaport"  #<-\n  admin: "127.0.0.1:19901"'),
    "listen_port_out_of_range": GOOD.replace(
        'listen: {http: "127.0.0.1:18080", admin: "127.0.0.1:19901"}',
        'listen:\n  http: "127.0.0.1:18080"\n  admin: "127.0.0.1:70000"  #<-'),
    "server_without_port": GOOD.replace(
        '  v1: {servers: ["127.0.0.1:3001"], balance: least_conn, keepalive: 64, down_time: 10s, resolve_interval: 30s}',
        '  v1:\n    servers: ["127.0.0.1"]  #<-'),
    "duplicate_host": GOOD.replace("  - hosts: [plain.test]", "  - hosts: [plain.test, retro.example.org]  #<-"),
    "bad_balance": GOOD.replace(
        '  v1: {servers: ["127.0.0.1:3001"], balance: least_conn, keepalive: 64, down_time: 10s, resolve_interval: 30s}',
        '  v1:\n    servers: ["127.0.0.1:3001"]\n    balance: random_please  #<-'),
    "bad_duration": GOOD.replace(
        'timeouts: {client_header: 10s, client_body: 60s, keepalive: 75s, upstream_connect: 3s, upstream_response: 60s, tunnel_idle: 1h, drain: 30s}',
        'timeouts:\n  client_header: ten seconds  #<-'),
    "bad_size": GOOD.replace(
        'limits: {max_connections: 10000, max_request_head: 16k, max_headers: 100, max_uri: 8k, max_body: 0}',
        'limits:\n  max_request_head: 16 parsecs  #<-'),
    "yaml_syntax": GOOD + "sites: [unclosed  #<-\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_check_bad_file_reports_file_and_line(switchyard_bin, tmp_path, case):
    text = BAD[case]
    assert "#<-" in text, "test case did not apply: %s" % case
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "#<-" in l)
    path, p = check(switchyard_bin, tmp_path, text)
    assert p.returncode == 1, p
    m = re.search(re.escape(path) + r":(\d+): \S", p.stderr)
    assert m, "expected '%s:LINE: reason' on stderr, got: %r" % (path, p.stderr)
    if case == "yaml_syntax":
        # a parser may only notice at the end of the document
        assert int(m.group(1)) >= line - 1, p.stderr
    elif case == "duplicate_host":
        assert int(m.group(1)) in (line,), p.stderr
    else:
        assert int(m.group(1)) == line, p.stderr


def test_check_missing_file(switchyard_bin, tmp_path):
    path = str(tmp_path / "does-not-exist.yaml")
    p = run(switchyard_bin, "-t", "-c", path)
    assert p.returncode == 1, p
    assert "does-not-exist.yaml" in p.stderr, p


def test_run_with_bad_file_exits_nonzero(switchyard_bin, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD["unknown_top_level_key"])
    p = run(switchyard_bin, "-c", str(path))
    assert p.returncode != 0, p
    assert str(path) + ":" in p.stderr, p
