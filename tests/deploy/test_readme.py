"""deploy/README.md walks an operator through every step and documents recovery."""
import re

import pytest

from conftest import DEPLOY, K8S

README = (DEPLOY / "README.md").read_text()


def headings():
    """(level, title, line index) of the headings outside code fences."""
    out, fence = [], False
    for i, line in enumerate(README.splitlines()):
        if line.startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"(#+) (.*)$", line)):
            out.append((len(m.group(1)), m.group(2), i))
    return out


def section(title):
    """Text of a section up to the next heading of the same or a higher level."""
    lines = README.splitlines()
    hs = headings()
    found = [(lvl, i) for lvl, t, i in hs if t == title]
    assert found, f"section {title!r} missing"
    level, start = found[0]
    end = next((i for lvl, t, i in hs if i > start and lvl <= level), len(lines))
    return "\n".join(lines[start + 1:end])


@pytest.mark.parametrize("step", [
    "terraform apply", "terraform output name_servers", "NS records", "kube_config_command",
    "az aks get-credentials", "terraform output -raw azure_env", "az acr build",
    "deploy/scripts/make-secrets.sh", "kubectl apply -k deploy/k8s/overlays/aks",
    "openssl s_client", "X-Postfacto-Version: 4.1.0", "X-Postfacto-Version: 4.2.0",
    "?postfacto_version=4.1.0", "switchyard -t -c",
])
def test_walkthrough_step_is_documented(step):
    assert step in README


@pytest.mark.parametrize("title,command", [
    ("1. Infrastructure: `terraform apply`", "terraform apply"),
    ("2. DNS delegation", "NS records"),
    ("3. Cluster credentials and site settings", "kube_config_command"),
    ("4. The Switchyard image", "az acr build"),
    ("5. Secrets", "make-secrets.sh"),
    ("6. `kubectl apply -k`", "kubectl apply -k deploy/k8s/overlays/aks"),
    ("7. Wait for the certificate", "openssl s_client"),
    ("8. Verify both versions and the fallback", "X-Postfacto-Version: 4.1.0"),
])
def test_walkthrough_sections_in_order(title, command):
    assert command in section(title)
    number = int(title.split(".")[0])
    if number > 1:
        prev = re.search(rf"^## {number - 1}\. ", README, re.M)
        assert prev and prev.start() < README.index(f"## {title}")


def test_failure_table_covers_pod_node_zone_cluster():
    text = section("What survives which failure")
    for failure in ("pod", "a node", "a zone", "the whole cluster", "the region"):
        assert f"| {failure}" in text or f"| a gateway {failure}" in text or failure in text, failure


def test_restore_from_blob_is_step_by_step():
    text = section("Restore")
    for cmd in ("az storage blob download", "kubectl -n postfacto cp", "pg_restore", "--replicas=0",
                "--replicas=2", "PersistentVolume", "claimRef", "disk.csi.azure.com"):
        assert cmd in text, cmd


def test_upgrade_and_reload_and_rps_scaling_documented():
    assert "kustomize edit set image" in section("Upgrading versions") or "newTag" in section("Upgrading versions")
    assert "SIGHUP" in section("Changing the gateway configuration")
    rps = section("Scaling on requests per second")
    assert "KEDA" in rps and "prometheus-adapter" in rps
    assert (K8S / "examples" / "keda-scaledobject.yaml").exists()


def test_key_vault_alternative_documented():
    assert "Key Vault" in section("5. Secrets")


def test_readme_references_existing_paths():
    for path in re.findall(r"`((?:k8s|scripts|terraform)/[\w./-]+)`", README):
        if "<" in path or "/secrets/" in path:
            continue
        assert (DEPLOY / path).exists() or (DEPLOY / path.rstrip("/")).exists(), path
