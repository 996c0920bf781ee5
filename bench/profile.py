#!/usr/bin/env python3
"""Instructions per request of each proxy, counted by valgrind (callgrind).

Instruction counts hardly move when other work shares the machine, unlike
requests/s. Each proxy runs with ONE worker (nginx: worker_processes 1 and no
master; HAProxy: nbthread 1; Caddy: GOMAXPROCS=1; Switchyard: workers: 1) under
callgrind, twice: once serving WARMUP requests, once serving WARMUP + N. The
difference of the two totals divided by N is the cost of one request with
start-up, configuration loading and shutdown cancelled out.

Started by bench/profile.sh; see bench/README.md.
"""
import argparse
import datetime
import glob
import json
import os
import re
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

PROXIES = ["nginx", "haproxy", "caddy", "switchyard"]


def one_worker(name, text):
    if name == "nginx":
        return text.replace("worker_processes 2;", "worker_processes 1;").replace(
            "master_process on;", "master_process off;").replace(" reuseport", "")
    if name == "haproxy":
        return text.replace("nbthread 2", "nbthread 1")
    if name == "switchyard":
        return text.replace("workers: 2", "workers: 1")
    return text


def callgrind_total(path):
    total = 0
    for f in glob.glob(path + "*"):
        with open(f, errors="replace") as fh:
            for line in fh:
                m = re.match(r"^(?:summary|totals):\s+(\d+)", line)
                if m:
                    total += int(m.group(1))
                    break
    return total


def run_once(name, argv, env, port, requests, run_dir, tag, client, tls=False):
    out = os.path.join(run_dir, "callgrind.%s.%s.out" % (name, tag))
    for f in glob.glob(out + "*"):
        os.unlink(f)
    vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s.%%p" % out,
          "--trace-children=no", "--dump-instr=no", "--compress-strings=no"]
    proc = bench.Proc("%s-%s" % (name, tag), vg + argv, os.path.join(run_dir, "%s-%s.log" % (name, tag)),
                      env=env, cwd=run_dir)
    try:
        if bench.wait_ports(proc, [port], seconds=120):
            raise RuntimeError("did not come up under valgrind (exit %s; log %s)" % (
                proc.popen.returncode, proc.logfile))
        r = client.run([sys.executable, os.path.join(bench.BENCH, "fixedload.py"), "127.0.0.1",
                        str(port), str(requests), "8", "4.1.0"] + (["tls"] if tls else []), timeout=900)
        text = r.stdout.decode().strip()
        if r.returncode != 0:
            raise RuntimeError("fixed client failed: %s" % (text.splitlines() or ["?"])[-1])
    finally:
        proc.stop(grace=60)
        bench.Proc.registry.remove(proc) if proc in bench.Proc.registry else None
    # valgrind writes its output file while the process exits
    for _ in range(50):
        if callgrind_total(out):
            break
        time.sleep(0.2)
    total = callgrind_total(out)
    if not total:
        with open(proc.logfile, errors="replace") as f:
            crashed = "report this bug to: www.valgrind.org" in f.read()
        if crashed:
            raise RuntimeError("valgrind itself crashed running it (log %s)" % proc.logfile)
        raise RuntimeError("no callgrind totals in %s*" % out)
    return total, text


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--switchyard", required=True)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--results", default=os.path.join(bench.BENCH, "results"))
    ap.add_argument("--only", default="")
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("BENCH_PORT_BASE", "28000")) + 500)
    ap.add_argument("--client-cpu", default=os.environ.get("BENCH_CLIENT_CPU", "1"))
    args = ap.parse_args()

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(args.results, "profile-%s" % stamp)
    os.makedirs(run_dir)
    client = bench.Client(args.client_cpu if (os.cpu_count() or 1) > 1 else "")
    ports = bench.pick_ports(args.port_base)
    cert, key, both = bench.make_cert(run_dir)
    values = {"RUN": run_dir, "CERT": cert, "KEY": key, "CERT_KEY_PEM": both,
              "NOFILE": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
              "PORT_A": ports["A"], "PORT_B": ports["B"]}
    bench.log("== instructions per request (callgrind, one worker each, %d requests, %d warm-up)"
              % (args.requests, args.warmup))
    bench.log("   run directory: %s" % run_dir)
    for name in ("A", "B"):
        os.makedirs(os.path.join(run_dir, "upstream-%s-tmp" % name), exist_ok=True)
        conf = bench.render("upstream-nginx.conf", os.path.join(run_dir, "upstream-%s.conf" % name),
                            dict(values, NAME=name, PORT=ports[name]))
        p = bench.Proc("upstream-" + name, ["nginx", "-p", run_dir, "-e",
                                            os.path.join(run_dir, "upstream-%s.error.log" % name),
                                            "-c", conf], os.path.join(run_dir, "upstream-%s.log" % name))
        if bench.wait_ports(p, [ports[name]]):
            raise RuntimeError("upstream %s did not start" % name)

    results = {}
    only = [x for x in args.only.split(",") if x]
    for name in PROXIES:
        if only and name not in only:
            continue
        http, https = ports[name + "_http"], ports[name + "_https"]
        v = dict(values, PORT_HTTP=http, PORT_HTTPS=https, PORT_ADMIN=ports["switchyard_admin"])
        env = dict(os.environ)
        template = {"nginx": "nginx.conf", "haproxy": "haproxy.cfg", "caddy": "Caddyfile",
                    "switchyard": "switchyard.yaml"}[name]
        cfg = bench.render(template, os.path.join(run_dir, template), v)
        with open(cfg) as f:
            text = one_worker(name, f.read())
        with open(cfg, "w") as f:
            f.write(text)
        if name == "nginx":
            os.makedirs(os.path.join(run_dir, "nginx-tmp"), exist_ok=True)
            argv = ["/usr/sbin/nginx", "-p", run_dir, "-e", os.path.join(run_dir, "nginx.error.log"), "-c", cfg]
        elif name == "haproxy":
            argv = ["/usr/sbin/haproxy", "-db", "-f", cfg]
        elif name == "caddy":
            env.update(GOMAXPROCS="1", HOME=run_dir, XDG_CONFIG_HOME=os.path.join(run_dir, "caddy-config"),
                       XDG_DATA_HOME=os.path.join(run_dir, "caddy-data"))
            argv = ["/usr/bin/caddy", "run", "--adapter", "caddyfile", "--config", cfg]
        else:
            if not os.access(args.switchyard, os.X_OK):
                results[name] = {"status": "n/a", "reason": "no binary at %s" % args.switchyard}
                bench.log("   %-10s n/a (no binary at %s)" % (name, args.switchyard))
                continue
            argv = [args.switchyard, "-c", cfg]
        def per_request(port, tag, tls):
            """(full run - warm-up run) / requests: start-up, shutdown and, over TLS, the 8
            handshakes cancel out."""
            base, _ = run_once(name, argv, env, port, args.warmup, run_dir, tag + "warmup", client, tls)
            total, _ = run_once(name, argv, env, port, args.warmup + args.requests, run_dir, tag + "full",
                                client, tls)
            return (total - base) / args.requests, base, total

        try:
            ipr, base, total = per_request(http, "", False)
            ipr_s, base_s, total_s = per_request(https, "tls-", True)
            results[name] = {"status": "ok", "instructions_per_request": round(ipr),
                             "instructions_warmup_run": base, "instructions_full_run": total,
                             "instructions_per_https_request": round(ipr_s),
                             "instructions_https_warmup_run": base_s,
                             "instructions_https_full_run": total_s}
            bench.log("   %-10s %10.0f instructions/request over HTTP, %10.0f over HTTPS" % (name, ipr, ipr_s))
        except Exception as e:  # a proxy that cannot run under valgrind is reported, not fatal
            results[name] = {"status": "n/a", "reason": str(e)}
            bench.loud("%s: n/a (%s)" % (name, str(e).splitlines()[0]))

    bench.log("")
    for key, what in (("instructions_per_request", "HTTP"), ("instructions_per_https_request", "HTTPS")):
        sy = results.get("switchyard", {}).get(key)
        for other in ("nginx", "haproxy", "caddy"):
            o = results.get(other, {}).get(key)
            bench.log("   %-5s switchyard/%-8s %s" % (what, other, bench.fmt(bench.ratio(sy, o), ".2f")))
    data = {"timestamp": stamp, "requests": args.requests, "warmup": args.warmup,
            "method": "callgrind Ir, (full run - warm-up run) / requests, one worker per proxy; "
                      "HTTPS over 8 keep-alive TLS connections",
            "results": results}
    path = os.path.join(args.results, "profile-%s.json" % stamp)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    with open(os.path.join(args.results, "profile-latest.json"), "w") as f:
        json.dump(data, f, indent=2)
    bench.log("results: %s" % path)


if __name__ == "__main__":
    import signal

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except Exception:
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        bench.Proc.stop_all()
    sys.exit(code)
