"""The gateway configuration shipped in the ConfigMap."""
import pytest
import yaml

from conftest import REPO, run, switchyard_config_path

BINARY = REPO / "build" / "switchyard"
HOST = "retro.example.org"


@pytest.fixture(scope="module")
def cfg():
    return yaml.safe_load(switchyard_config_path().read_text())


def test_rendered_configmap_is_the_checked_file(k8s):
    cm = k8s.named_prefix("ConfigMap", "switchyard-config", "ingress")
    assert cm["data"]["switchyard.yaml"] == switchyard_config_path().read_text()


def test_listeners_match_the_container_ports(cfg, k8s):
    assert cfg["listen"] == {"http": "0.0.0.0:8080", "https": "0.0.0.0:8443", "admin": "0.0.0.0:9901"}
    svc_ports = {p["port"] for p in k8s.get("Service", "switchyard", "ingress")["spec"]["ports"]}
    assert 9901 not in svc_ports


def test_version_routing(cfg):
    [site] = cfg["sites"]
    assert site["hosts"] == [HOST]
    v = site["version"]
    assert v["header"] == "X-Postfacto-Version"
    assert v["query"] == "postfacto_version"
    assert v["cookie"] == "postfacto_version"
    assert v["routes"] == {"4.1.0": "postfacto-4.1.0", "4.2.0": "postfacto-4.2.0"}
    assert v["default"] == "4.2.0"


@pytest.mark.parametrize("version", ["4.1.0", "4.2.0"])
def test_upstreams_point_at_the_rendered_services(cfg, k8s, version):
    servers = cfg["upstreams"][f"postfacto-{version}"]["servers"]
    assert len(servers) == 1
    host, port = servers[0].rsplit(":", 1)
    name, ns, rest = host.split(".", 2)
    assert rest == "svc.cluster.local"
    svc = k8s.get("Service", name, ns)
    assert int(port) in [p["port"] for p in svc["spec"]["ports"]]
    assert svc["spec"]["selector"]["app.kubernetes.io/version"] == version
    # Headless: the name answers with every ready pod, and the gateway balances over them.
    assert svc["spec"].get("clusterIP") == "None", svc["spec"]
    assert not svc["spec"].get("publishNotReadyAddresses", False)
    # The ClusterIP Service of the version stays for everything else.
    plain = k8s.get("Service", "postfacto-" + version.replace(".", "-"), ns)
    assert plain["spec"].get("clusterIP") != "None"
    assert plain["spec"]["selector"] == svc["spec"]["selector"]


def test_app_pods_outlive_one_resolve_interval_after_sigterm(cfg, k8s):
    """A pod that is going keeps serving until every gateway has re-resolved its name."""
    interval = max(_seconds(u["resolve_interval"]) for u in cfg["upstreams"].values())
    for version in ("4-1-0", "4-2-0"):
        dep = k8s.get("Deployment", "postfacto-" + version, "postfacto")
        spec = dep["spec"]["template"]["spec"]
        c = next(c for c in spec["containers"] if c["name"] == "postfacto")
        pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pause > interval
        assert spec.get("terminationGracePeriodSeconds", 30) > pause


def _seconds(text):
    text = str(text)
    return int(text[:-1]) * {"s": 1, "m": 60}[text[-1]] if text[-1] in "sm" else int(text)


def test_acme_for_the_public_host_on_the_shared_volume(cfg, k8s):
    tls = cfg["tls"]
    assert tls["redirect"] is True
    assert tls["hsts"].startswith("max-age=")
    acme = tls["acme"]
    assert acme["directory"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert acme["domains"] == [HOST]
    assert "@" in acme["email"]
    assert acme["storage"] == "/var/lib/switchyard"
    gw = k8s.get("Deployment", "switchyard", "ingress")
    mounts = [m["mountPath"] for m in gw["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]]
    assert acme["storage"] in mounts


def test_redirect_names_the_public_https_port(cfg, k8s):
    """Clients reach the Service's https port (443), never the container's (8443): the
    redirect must name the former (tls.redirect_port, 443 when absent)."""
    svc = k8s.get("Service", "switchyard", "ingress")
    [https] = [p for p in svc["spec"]["ports"] if p["name"] == "https"]
    assert cfg["tls"].get("redirect_port", 443) == https["port"]


def test_drain_fits_the_termination_grace_period(cfg, k8s):
    gw = k8s.get("Deployment", "switchyard", "ingress")
    assert int(cfg["timeouts"]["drain"].rstrip("s")) < gw["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def require_binary():
    if not BINARY.exists():
        pytest.skip("build/switchyard does not exist yet (run `make`); "
                    "`switchyard -t` on the ConfigMap config is not checked")


def test_switchyard_accepts_the_configmap_config():
    require_binary()
    res = run([str(BINARY), "-t", "-c", str(switchyard_config_path())], cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_switchyard_rejects_a_broken_copy(tmp_path):
    require_binary()
    text = switchyard_config_path().read_text().replace('default: "4.2.0"', 'default: "9.9.9"')
    assert 'default: "9.9.9"' in text
    bad = tmp_path / "switchyard.yaml"
    bad.write_text(text)
    res = run([str(BINARY), "-t", "-c", str(bad)], cwd=REPO, timeout=60)
    assert res.returncode == 1
    assert f"{bad}:" in res.stdout + res.stderr
