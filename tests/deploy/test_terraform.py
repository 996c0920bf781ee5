"""Terraform configuration, parsed offline with @cdktf/hcl2json."""
import re

import pytest

from conftest import REPO, TERRAFORM, run

ZONES = ["1", "2", "3"]


def blocks(tf, kind):
    """{"<type>.<name>": body} for resources (kind="resource") or data sources."""
    out = {}
    for path, body in tf.items():
        for rtype, named in body.get(kind, {}).items():
            for name, items in named.items():
                out[f"{rtype}.{name}"] = {**items[0], "_file": path}
    return out


def one(tf, rtype):
    found = {k: v for k, v in blocks(tf, "resource").items() if k.startswith(rtype + ".")}
    assert len(found) == 1, f"{rtype}: {sorted(found)}"
    return next(iter(found.values()))


def pools(tf):
    return {v["name"]: v for k, v in blocks(tf, "resource").items()
            if k.startswith("azurerm_kubernetes_cluster_node_pool.")}


def variables(tf):
    out = {}
    for path, body in tf.items():
        for name, items in body.get("variable", {}).items():
            out[(path, name)] = items[0]
    return out


def test_every_tf_file_parses(terraform):
    files = {str(p.relative_to(REPO)) for p in TERRAFORM.rglob("*.tf")}
    assert set(terraform) == files
    assert len(files) >= 10


def test_hcl_parser_rejects_broken_hcl(node_tools, tmp_path):
    bad = tmp_path / "bad.tf"
    bad.write_text('resource "x" "y" {\n  a = \n')
    res = run(["node", str(node_tools / "hcl2json.mjs"), str(bad)])
    assert res.returncode == 1


def test_azurerm_provider_is_pinned(terraform):
    [tfblock] = [b for body in terraform.values() for b in body.get("terraform", [])
                 if "required_providers" in b]
    azurerm = tfblock["required_providers"][0]["azurerm"]
    assert azurerm["source"] == "hashicorp/azurerm"
    assert re.fullmatch(r"~> [34]\.\d+(\.\d+)?", azurerm["version"]), azurerm["version"]
    assert tfblock["required_version"].startswith(">=")


def test_resource_group(terraform):
    rgs = {k: v for k, v in blocks(terraform, "resource").items()
           if k.startswith("azurerm_resource_group.")}
    assert rgs["azurerm_resource_group.main"]["name"] == "${var.resource_group_name}"
    assert "azurerm_resource_group.data" in rgs


def test_aks_system_pool(terraform):
    aks = one(terraform, "azurerm_kubernetes_cluster")
    [pool] = aks["default_node_pool"]
    assert pool["name"] == "system"
    assert pool["only_critical_addons_enabled"] is True
    assert pool["zones"] == "${var.zones}"
    assert pool["auto_scaling_enabled"] is True
    assert pool["min_count"] and pool["max_count"]


def test_node_pool_zones_default_to_1_2_3(terraform):
    zones = [v for (path, name), v in variables(terraform).items()
             if name == "zones" and path.endswith("modules/aks/variables.tf")]
    assert zones[0]["default"] == ZONES


def test_aks_enforces_network_policies(terraform):
    [net] = one(terraform, "azurerm_kubernetes_cluster")["network_profile"]
    assert net["network_plugin"] == "azure"
    assert net["network_policy"] in ("azure", "calico", "cilium")
    assert net["load_balancer_sku"] == "standard"


def test_aks_identity_and_csi_drivers(terraform):
    aks = one(terraform, "azurerm_kubernetes_cluster")
    assert aks["identity"][0]["type"] == "SystemAssigned"
    [storage] = aks["storage_profile"]
    assert storage["disk_driver_enabled"] is True and storage["file_driver_enabled"] is True
    assert aks["key_vault_secrets_provider"][0]["secret_rotation_enabled"] is True
    assert aks["workload_identity_enabled"] is True and aks["oidc_issuer_enabled"] is True


def test_applications_pool(terraform):
    p = pools(terraform)["applications"]
    assert p["mode"] == "User"
    assert p["node_labels"] == {"workload": "applications"}
    assert "node_taints" not in p
    assert p["zones"] == "${var.zones}"
    assert p["auto_scaling_enabled"] is True
    assert p["min_count"] == "${var.applications_pool.min_count}"
    assert p["max_count"] == "${var.applications_pool.max_count}"


def test_databases_pool(terraform):
    p = pools(terraform)["databases"]
    assert p["mode"] == "User"
    assert p["node_labels"] == {"workload": "databases"}
    assert p["node_taints"] == ["workload=databases:NoSchedule"]
    assert p["zones"] == "${var.zones}"
    assert p["auto_scaling_enabled"] is True
    assert p["min_count"] == "${var.databases_pool.min_count}"
    assert p["max_count"] == "${var.databases_pool.max_count}"


def test_pool_sizes_memory_heavy_and_premium_storage(terraform):
    v = {name: body for (path, name), body in variables(terraform).items()
         if path == "deploy/terraform/variables.tf"}
    db = v["databases_pool"]["default"]
    app = v["applications_pool"]["default"]
    assert re.fullmatch(r"Standard_E\d+[a-z]*s[a-z]*_v\d", db["vm_size"]), db["vm_size"]
    for pool in (db, app, v["system_pool"]["default"]):
        assert "s" in pool["vm_size"].split("_")[1][1:], pool["vm_size"]  # premium storage capable
        assert 1 <= pool["min_count"] <= pool["max_count"]
    assert db["min_count"] >= 3  # one node per zone for zone-pinned restarts


def test_static_zone_redundant_public_ip(terraform):
    ip = one(terraform, "azurerm_public_ip")
    assert ip["sku"] == "Standard"
    assert ip["allocation_method"] == "Static"
    assert ip["zones"] == ZONES
    assert ip["name"] == "${var.public_ip_name}"


def test_aks_may_use_the_public_ip(terraform):
    ras = [v for k, v in blocks(terraform, "resource").items() if k.startswith("azurerm_role_assignment.")]
    net = [r for r in ras if r["role_definition_name"] == "Network Contributor"]
    assert len(net) == 1
    assert net[0]["scope"] == "${azurerm_resource_group.main.id}"
    assert "cluster_identity_principal_id" in net[0]["principal_id"]
    assert any(r["role_definition_name"] == "AcrPull" for r in ras)
    assert any(r["role_definition_name"] == "Contributor" and "data" in r["scope"] for r in ras)


def test_dns_zone_and_a_record(terraform):
    zone = one(terraform, "azurerm_dns_zone")
    assert zone["name"] == "${var.dns_zone_name}"
    a = one(terraform, "azurerm_dns_a_record")
    assert a["name"] == "${var.host_label}"
    assert a["zone_name"] == "${azurerm_dns_zone.main.name}"
    assert a["records"] == ["${azurerm_public_ip.ingress.ip_address}"]


def test_storage_account_container_and_share(terraform):
    sa = one(terraform, "azurerm_storage_account")
    assert sa["account_replication_type"] in ("ZRS", "GZRS", "RAGZRS")
    assert sa["min_tls_version"] == "TLS1_2"
    assert sa["allow_nested_items_to_be_public"] is False
    c = one(terraform, "azurerm_storage_container")
    assert c["container_access_type"] == "private"
    assert c["storage_account_id"] == "${azurerm_storage_account.main.id}"
    share = one(terraform, "azurerm_storage_share")
    assert share["storage_account_id"] == "${azurerm_storage_account.main.id}"
    assert share["name"] == "${var.acme_share_name}"
    policy = one(terraform, "azurerm_storage_management_policy")
    assert "delete_after_days_since_modification_greater_than" in \
        policy["rule"][0]["actions"][0]["base_blob"][0]


def test_every_variable_has_a_description_and_type(terraform):
    vs = variables(terraform)
    assert len(vs) >= 20
    for (path, name), body in vs.items():
        assert body.get("description", "").strip(), f"{path}: {name}"
        assert "type" in body, f"{path}: {name}"


def test_every_module_input_is_declared(terraform):
    root = next(b for p, b in terraform.items() if p == "deploy/terraform/main.tf")
    for name, [mod] in root["module"].items():
        declared = {n for (p, n) in variables(terraform) if p.startswith(mod["source"].replace("./", "deploy/terraform/"))}
        passed = set(mod) - {"source"}
        assert passed <= declared, f"module {name}: {passed - declared}"


def test_outputs_for_kubectl_ip_and_name_servers(terraform):
    outs = {n: b[0] for p, body in terraform.items() if p.startswith("deploy/terraform/outputs")
            for n, b in body.get("output", {}).items()}
    assert "az aks get-credentials" in outs["kube_config_command"]["value"]
    assert outs["public_ip"]["value"] == "${module.edge.public_ip_address}"
    assert outs["name_servers"]["value"] == "${module.edge.name_servers}"
    assert outs["backup_storage_key"]["sensitive"] is True
    for key in ("RESOURCE_GROUP", "DISK_RESOURCE_GROUP", "PUBLIC_IP_NAME", "STORAGE_ACCOUNT",
                "ACME_SHARE", "BACKUP_CONTAINER"):
        assert f"{key}=" in outs["azure_env"]["value"], key
    for o in outs.values():
        assert o.get("description")


def test_azure_env_has_the_keys_terraform_writes(terraform):
    env = (REPO / "deploy/k8s/overlays/aks/azure.env").read_text().split()
    keys = sorted(line.split("=", 1)[0] for line in env)
    assert keys == sorted(["RESOURCE_GROUP", "DISK_RESOURCE_GROUP", "PUBLIC_IP_NAME",
                           "STORAGE_ACCOUNT", "ACME_SHARE", "BACKUP_CONTAINER"])


def test_remote_state_backend_example():
    text = (TERRAFORM / "backend.tf.example").read_text()
    assert 'backend "azurerm"' in text
    for key in ("resource_group_name", "storage_account_name", "container_name", "key"):
        assert re.search(rf"^\s*{key}\s*=", text, re.M), key


def test_only_the_example_tfvars_is_committed():
    res = run(["git", "ls-files", "--others", "--cached", "--exclude-standard", "deploy/terraform"], cwd=REPO)
    tfvars = [p for p in res.stdout.split() if p.endswith(".tfvars") or p.endswith(".tfvars.json")]
    assert tfvars == ["deploy/terraform/example.tfvars"]


SECRETISH = re.compile(r"(password|secret|token|client_secret|access_key|sas|connection_string|_key)\b", re.I)


def test_no_secrets_in_tfvars(node_tools):
    path = TERRAFORM / "example.tfvars"
    res = run(["node", str(node_tools / "hcl2json.mjs"), str(path)])
    assert res.returncode == 0, res.stderr
    import json
    values = json.loads(res.stdout)[str(path)]
    assert values, "empty example.tfvars"
    for k, v in values.items():
        assert not SECRETISH.search(k), k
        assert not re.search(r"[A-Za-z0-9+/]{40,}={0,2}", str(v)), k


def test_tfvars_keys_are_declared_variables(node_tools, terraform):
    import json
    path = TERRAFORM / "example.tfvars"
    values = json.loads(run(["node", str(node_tools / "hcl2json.mjs"), str(path)]).stdout)[str(path)]
    root_vars = {n for (p, n) in variables(terraform) if p == "deploy/terraform/variables.tf"}
    assert set(values) <= root_vars
    required = {n for (p, n), b in variables(terraform).items()
                if p == "deploy/terraform/variables.tf" and "default" not in b}
    assert required <= set(values)


def test_terraform_fmt_when_available():
    import shutil
    if not shutil.which("terraform"):
        pytest.skip("terraform is not installed: formatting not checked")
    res = run(["terraform", "fmt", "-recursive", "-check", "-diff", str(TERRAFORM)])
    assert res.returncode == 0, res.stdout + res.stderr
