"""Policy checks on the rendered AKS overlay: one test per requirement."""
import re

import pytest
import yaml

from conftest import VERSIONS

SUFFIX = {v: v.replace(".", "-") for v in VERSIONS}


def pod_spec(obj):
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def pod_labels(obj):
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return obj["spec"]["template"]["metadata"]["labels"]


def workloads(k8s):
    return [o for kind in ("Deployment", "StatefulSet", "Job", "CronJob") for o in k8s.of(kind)]


def container(obj, name):
    found = [c for c in pod_spec(obj)["containers"] if c["name"] == name]
    assert len(found) == 1, name
    return found[0]


def env_map(c):
    return {e["name"]: e for e in c.get("env", [])}


def selector_matches(selector, labels):
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions", []):
        val = labels.get(expr["key"])
        op = expr["operator"]
        if op == "In" and val not in expr["values"]:
            return False
        if op == "NotIn" and val in expr["values"]:
            return False
        if op == "Exists" and val is None:
            return False
        if op == "DoesNotExist" and val is not None:
            return False
    return True


@pytest.fixture(scope="module")
def gateway(k8s):
    return k8s.get("Deployment", "switchyard", "ingress")


# --- namespaces ----------------------------------------------------------

def test_namespaces_ingress_and_postfacto(k8s):
    assert sorted(n["metadata"]["name"] for n in k8s.of("Namespace")) == ["ingress", "postfacto"]


def test_every_namespaced_object_is_in_ingress_or_postfacto(k8s):
    cluster_scoped = {"Namespace", "StorageClass"}
    for o in k8s.docs:
        if o["kind"] in cluster_scoped:
            assert "namespace" not in o["metadata"]
        else:
            assert o["metadata"].get("namespace") in ("ingress", "postfacto"), o["metadata"]["name"]


def test_gateway_objects_live_in_ingress_and_apps_in_postfacto(k8s):
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                 "PersistentVolumeClaim", "ConfigMap"):
        for o in k8s.of(kind):
            name = o["metadata"]["name"]
            want = "ingress" if name.startswith("switchyard") else "postfacto"
            assert o["metadata"]["namespace"] == want, f"{kind} {name}"


# --- Switchyard Deployment -------------------------------------------------

def test_gateway_has_at_least_two_replicas(gateway):
    assert gateway["spec"]["replicas"] >= 2


def test_gateway_rolls_without_losing_capacity(gateway):
    ru = gateway["spec"]["strategy"]["rollingUpdate"]
    assert ru["maxUnavailable"] == 0 and ru["maxSurge"] >= 1


def test_gateway_spreads_across_zones(gateway):
    spread = pod_spec(gateway)["topologySpreadConstraints"]
    zone = [c for c in spread if c["topologyKey"] == "topology.kubernetes.io/zone"]
    assert len(zone) == 1
    assert zone[0]["maxSkew"] == 1 and zone[0]["whenUnsatisfiable"] == "DoNotSchedule"
    assert selector_matches(zone[0]["labelSelector"], pod_labels(gateway))


def test_gateway_runs_on_the_system_pool(gateway):
    spec = pod_spec(gateway)
    assert spec["nodeSelector"] == {"kubernetes.azure.com/mode": "system"}
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in spec["tolerations"]


def test_gateway_probes_on_admin_port(gateway):
    c = container(gateway, "switchyard")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080, "https": 8443, "admin": 9901}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}


def test_gateway_pod_security(gateway):
    spec = pod_spec(gateway)
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(gateway, "switchyard")
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert sc.get("privileged", False) is False
    assert all(p["containerPort"] >= 1024 for p in c["ports"])
    assert spec["automountServiceAccountToken"] is False


def test_gateway_drains_within_grace_period(gateway, k8s):
    cfg = yaml.safe_load(k8s.named_prefix("ConfigMap", "switchyard-config", "ingress")["data"]["switchyard.yaml"])
    drain = int(cfg["timeouts"]["drain"].rstrip("s"))
    pre = container(gateway, "switchyard")["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod_spec(gateway)["terminationGracePeriodSeconds"] > drain + pre


def test_gateway_mounts_config_acme_and_tmp(gateway, k8s):
    spec = pod_spec(gateway)
    mounts = {m["mountPath"]: m for m in container(gateway, "switchyard")["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    cm = k8s.named_prefix("ConfigMap", "switchyard-config", "ingress")
    assert vols[mounts["/etc/switchyard"]["name"]]["configMap"]["name"] == cm["metadata"]["name"]
    assert mounts["/etc/switchyard"]["readOnly"] is True
    assert vols[mounts["/var/lib/switchyard"]["name"]]["persistentVolumeClaim"]["claimName"] == "switchyard-acme"
    assert "emptyDir" in vols[mounts["/tmp"]["name"]]
    assert container(gateway, "switchyard")["args"] == ["-c", "/etc/switchyard/switchyard.yaml"]


def test_gateway_image_is_set_by_the_overlay(gateway):
    image = container(gateway, "switchyard")["image"]
    assert re.fullmatch(r"[a-z0-9]+\.azurecr\.io/switchyard:[0-9][\w.-]*", image), image


def test_gateway_has_cpu_request_for_the_hpa(gateway):
    res = container(gateway, "switchyard")["resources"]
    assert res["requests"]["cpu"] and res["limits"]["memory"]


# --- HPA / PDB ---------------------------------------------------------------

def test_hpa_two_to_ten_on_cpu(k8s):
    hpa = k8s.get("HorizontalPodAutoscaler", "switchyard", "ingress")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "switchyard"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
    [metric] = spec["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 40 <= metric["resource"]["target"]["averageUtilization"] <= 80


def test_hpa_behaviour_scales_up_fast_and_down_slowly(k8s):
    b = k8s.get("HorizontalPodAutoscaler", "switchyard", "ingress")["spec"]["behavior"]
    up, down = b["scaleUp"], b["scaleDown"]
    assert up["stabilizationWindowSeconds"] == 0 and up["selectPolicy"] == "Max"
    assert {"type": "Percent", "value": 100, "periodSeconds": 15} in up["policies"]
    assert {"type": "Pods", "value": 4, "periodSeconds": 15} in up["policies"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]


def test_gateway_pdb_keeps_one_replica_serving(k8s, gateway):
    pdb = k8s.get("PodDisruptionBudget", "switchyard", "ingress")
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1
    assert selector_matches(pdb["spec"]["selector"], pod_labels(gateway))


# --- Service / storage --------------------------------------------------------

def test_gateway_service_is_a_load_balancer_on_the_static_ip(k8s, gateway):
    svc = k8s.get("Service", "switchyard", "ingress")
    assert svc["spec"]["type"] == "LoadBalancer"
    ann = svc["metadata"]["annotations"]
    assert ann["service.beta.kubernetes.io/azure-load-balancer-resource-group"] == "switchyard-prod"
    assert ann["service.beta.kubernetes.io/azure-pip-name"] == "switchyard-ingress"
    ports = {(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {(80, "http"), (443, "https")}
    assert selector_matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(gateway))
    assert svc["spec"]["externalTrafficPolicy"] == "Local"


def test_acme_storage_is_a_shared_azure_files_claim(k8s):
    pvc = k8s.get("PersistentVolumeClaim", "switchyard-acme", "ingress")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    sc = k8s.get("StorageClass", pvc["spec"]["storageClassName"])
    assert sc["provisioner"] == "file.csi.azure.com"
    assert sc["reclaimPolicy"] == "Retain"
    p = sc["parameters"]
    assert p["skuName"].endswith("_ZRS")
    assert (p["resourceGroup"], p["storageAccount"], p["shareName"]) == \
        ("switchyard-prod", "switchyardprodstate", "switchyard-acme")
    opts = set(sc["mountOptions"])
    assert {"uid=65532", "gid=65532"} <= opts


def test_no_placeholder_survives_the_overlay(rendered_yaml):
    assert "set-from-azure-env" not in rendered_yaml
    assert "set-by-overlay" not in rendered_yaml


def test_database_storage_class(k8s):
    sc = k8s.get("StorageClass", "databases-zrs-retain")
    assert sc["provisioner"] == "disk.csi.azure.com"
    assert sc["parameters"]["skuName"] in ("Premium_ZRS", "StandardSSD_ZRS")
    assert sc["parameters"]["resourceGroup"] == "switchyard-prod-data"
    assert sc["reclaimPolicy"] == "Retain"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["allowVolumeExpansion"] is True


# --- Postfacto ----------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_postfacto_deployment_and_service_per_version(k8s, version):
    s = SUFFIX[version]
    dep = k8s.get("Deployment", f"postfacto-{s}", "postfacto")
    c = container(dep, "postfacto")
    assert c["image"] == f"postfacto/postfacto:{version}"
    assert c["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert pod_labels(dep)["app.kubernetes.io/version"] == version
    svc = k8s.get("Service", f"postfacto-{s}", "postfacto")
    assert svc["spec"]["ports"][0]["port"] == 3000
    assert svc["spec"]["selector"]["app.kubernetes.io/version"] == version
    assert selector_matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(dep))
    assert dep["spec"]["replicas"] >= 2


def test_only_two_postfacto_versions_exist(k8s):
    images = sorted(c["image"] for o in workloads(k8s) for c in pod_spec(o)["containers"]
                    + pod_spec(o).get("initContainers", []) if c["image"].startswith("postfacto/"))
    assert set(images) == {"postfacto/postfacto:4.1.0", "postfacto/postfacto:4.2.0"}


@pytest.mark.parametrize("version", VERSIONS)
def test_postfacto_on_applications_pool_away_from_databases(k8s, version):
    dep = k8s.get("Deployment", f"postfacto-{SUFFIX[version]}", "postfacto")
    spec = pod_spec(dep)
    assert spec["nodeSelector"] == {"workload": "applications"}
    terms = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    db_pods = [pod_labels(o) for o in k8s.of("StatefulSet", "postfacto")]
    assert len(db_pods) == 4
    for labels in db_pods:
        assert any(t["topologyKey"] == "kubernetes.io/hostname"
                   and selector_matches(t["labelSelector"], labels) for t in terms), labels
    assert not any(selector_matches(t["labelSelector"], pod_labels(dep)) for t in terms)


@pytest.mark.parametrize("version", VERSIONS)
def test_postfacto_probes_on_root(k8s, version):
    c = container(k8s.get("Deployment", f"postfacto-{SUFFIX[version]}", "postfacto"), "postfacto")
    for probe in ("readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/" and get["port"] in ("http", 3000)
        assert {"name": "X-Forwarded-Proto", "value": "https"} in get["httpHeaders"]


@pytest.mark.parametrize("version", VERSIONS)
def test_postfacto_environment(k8s, version):
    s = SUFFIX[version]
    dep = k8s.get("Deployment", f"postfacto-{s}", "postfacto")
    c = container(dep, "postfacto")
    env = env_map(c)
    assert env["RAILS_ENV"]["value"] == "production"
    assert env["DATABASE_URL"]["value"] == "postgres://postfacto:$(POSTGRES_PASSWORD)@$(DB_HOST):5432/postfacto"
    assert env["REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@$(REDIS_HOST):6379/0"
    names = list(env)
    for ref in ("POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        assert names.index(ref) < names.index("DATABASE_URL")  # $(VAR) needs it defined first
    skb = env["SECRET_KEY_BASE"]["valueFrom"]["secretKeyRef"]
    assert skb["name"] == k8s.named_prefix("Secret", "postfacto-app", "postfacto")["metadata"]["name"]
    [cm_ref] = c["envFrom"]
    cm = k8s.get("ConfigMap", cm_ref["configMapRef"]["name"], "postfacto")
    assert cm["data"]["DB_HOST"] == f"postgres-{s}"
    assert cm["data"]["REDIS_HOST"] == f"redis-{s}"
    k8s.get("Service", f"postgres-{s}", "postfacto")
    k8s.get("Service", f"redis-{s}", "postfacto")
    db_secret = env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    assert db_secret.startswith(f"postfacto-db-{s}-")


def test_both_versions_share_one_secret_key_base(k8s):
    refs = {env_map(container(k8s.get("Deployment", f"postfacto-{s}", "postfacto"), "postfacto"))
            ["SECRET_KEY_BASE"]["valueFrom"]["secretKeyRef"]["name"] for s in SUFFIX.values()}
    assert len(refs) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_admin_user_created_by_a_job_not_a_hook(k8s, version):
    s = SUFFIX[version]
    job = k8s.get("Job", f"create-admin-{s}", "postfacto")
    c = container(job, "create-admin")
    assert c["image"] == f"postfacto/postfacto:{version}"
    assert "admin:create_user" in " ".join(c["command"])
    admin_secret = k8s.named_prefix("Secret", "postfacto-admin", "postfacto")
    assert {"secretRef": {"name": admin_secret["metadata"]["name"]}} in c["envFrom"]
    assert set(admin_secret["data"]) == {"ADMIN_EMAIL", "ADMIN_PASSWORD"}
    assert env_map(c)["DATABASE_URL"]["value"].endswith("@$(DB_HOST):5432/postfacto")
    assert pod_spec(job)["nodeSelector"] == {"workload": "applications"}
    for o in workloads(k8s):
        for ct in pod_spec(o)["containers"]:
            assert "postStart" not in ct.get("lifecycle", {}), o["metadata"]["name"]


# --- databases -----------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("db", ["postgres", "redis"])
def test_database_statefulset_per_version_on_databases_pool(k8s, version, db):
    sts = k8s.get("StatefulSet", f"{db}-{SUFFIX[version]}", "postfacto")
    spec = pod_spec(sts)
    assert spec["nodeSelector"] == {"workload": "databases"}
    assert {"key": "workload", "operator": "Equal", "value": "databases",
            "effect": "NoSchedule"} in spec["tolerations"]
    assert pod_labels(sts)["app.kubernetes.io/version"] == version
    [vct] = sts["spec"]["volumeClaimTemplates"]
    assert vct["spec"]["storageClassName"] == "databases-zrs-retain"
    assert vct["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert sts["spec"]["serviceName"] == f"{db}-{SUFFIX[version]}"
    svc = k8s.get("Service", f"{db}-{SUFFIX[version]}", "postfacto")
    assert selector_matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(sts))


def test_each_version_has_its_own_database_credentials(k8s):
    secrets = {s: k8s.named_prefix("Secret", f"postfacto-db-{s}", "postfacto") for s in SUFFIX.values()}
    assert secrets["4-1-0"]["data"]["POSTGRES_PASSWORD"] != secrets["4-2-0"]["data"]["POSTGRES_PASSWORD"]
    for s in SUFFIX.values():
        for db in ("postgres", "redis"):
            c = pod_spec(k8s.get("StatefulSet", f"{db}-{s}", "postfacto"))["containers"][0]
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e}
            assert refs == {secrets[s]["metadata"]["name"]}


@pytest.mark.parametrize("version", VERSIONS)
def test_redis_append_only_persistence(k8s, version):
    c = container(k8s.get("StatefulSet", f"redis-{SUFFIX[version]}", "postfacto"), "redis")
    args = c["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "everysec"
    data_dir = args[args.index("--dir") + 1]
    assert {"name": "data", "mountPath": data_dir} in c["volumeMounts"]
    assert "--requirepass" in args


@pytest.mark.parametrize("version", VERSIONS)
def test_postgres_data_on_the_claim(k8s, version):
    c = container(k8s.get("StatefulSet", f"postgres-{SUFFIX[version]}", "postfacto"), "postgres")
    env = env_map(c)
    mount = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["data"]
    assert env["PGDATA"]["value"].startswith(mount + "/")
    assert c["readinessProbe"]["exec"]["command"][0] == "pg_isready"


def test_database_pods_run_non_root(k8s):
    for sts in k8s.of("StatefulSet", "postfacto"):
        spec = pod_spec(sts)
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


# --- backups -------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_postgres_backup_cronjob_leaves_the_cluster(k8s, version):
    s = SUFFIX[version]
    cj = k8s.get("CronJob", f"postgres-backup-{s}", "postfacto")
    assert cj["spec"]["concurrencyPolicy"] == "Forbid"
    spec = pod_spec(cj)
    [dump] = spec["initContainers"]
    dump_cmd = " ".join(dump["command"])
    assert "pg_dump" in dump_cmd and "--format=custom" in dump_cmd and "--compress=" in dump_cmd
    assert env_map(dump)["PGHOST"]["value"] == "$(DB_HOST)"
    assert env_map(dump)["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"].startswith(f"postfacto-db-{s}-")
    upload = container(cj, "upload")
    assert "az storage blob upload" in " ".join(upload["command"])
    key = env_map(upload)["AZURE_STORAGE_KEY"]["valueFrom"]["secretKeyRef"]
    assert key["name"] == k8s.named_prefix("Secret", "backup-storage", "postfacto")["metadata"]["name"]
    settings = [k8s.get("ConfigMap", r["configMapRef"]["name"], "postfacto") for r in upload["envFrom"]]
    merged = {k: v for cm in settings for k, v in cm["data"].items()}
    assert merged["AZURE_STORAGE_ACCOUNT"] == "switchyardprodstate"
    assert merged["BACKUP_CONTAINER"] == "postgres-backups"
    assert merged["POSTFACTO_VERSION"] == version
    assert spec["nodeSelector"] == {"workload": "applications"}


# --- network policies -----------------------------------------------------------

def policies_for(k8s, labels, direction):
    """The NetworkPolicies of namespace postfacto that select a pod, for a direction."""
    return [p for p in k8s.of("NetworkPolicy", "postfacto")
            if selector_matches(p["spec"]["podSelector"], labels)
            and direction in p["spec"]["policyTypes"]]


def peer_allows(peer, labels, namespace, policy_ns="postfacto"):
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": namespace}
        if not selector_matches(peer["namespaceSelector"], ns_labels):
            return False
    elif namespace != policy_ns:
        return False
    return selector_matches(peer.get("podSelector", {}), labels)


def ingress_allowed(k8s, dst_labels, src_labels, src_ns, port):
    for p in policies_for(k8s, dst_labels, "Ingress"):
        for rule in p["spec"].get("ingress", []):
            ports = [x["port"] for x in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            peers = rule.get("from")
            if peers is None or any(peer_allows(x, src_labels, src_ns) for x in peers):
                return True
    return False


def egress_allowed(k8s, src_labels, dst_labels, dst_ns, port):
    for p in policies_for(k8s, src_labels, "Egress"):
        for rule in p["spec"].get("egress", []):
            ports = [x["port"] for x in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            peers = rule.get("to")
            if peers is None or any(peer_allows(x, dst_labels, dst_ns) for x in peers):
                return True
    return False


def test_default_deny_in_postfacto(k8s):
    deny = k8s.get("NetworkPolicy", "default-deny", "postfacto")
    assert deny["spec"]["podSelector"] == {}
    assert sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]


def test_no_policy_opens_ingress_to_everyone(k8s):
    for p in k8s.of("NetworkPolicy", "postfacto"):
        for rule in p["spec"].get("ingress", []):
            assert rule.get("from"), f"{p['metadata']['name']} allows any source"


def test_only_the_gateway_reaches_postfacto_on_3000(k8s, gateway):
    gw = pod_labels(gateway)
    for s in SUFFIX.values():
        app = pod_labels(k8s.get("Deployment", f"postfacto-{s}", "postfacto"))
        assert ingress_allowed(k8s, app, gw, "ingress", 3000)
        assert not ingress_allowed(k8s, app, gw, "ingress", 5432)
        assert not ingress_allowed(k8s, app, gw, "default", 3000)
        assert not ingress_allowed(k8s, app, {"app.kubernetes.io/name": "other"}, "ingress", 3000)
        for other in workloads(k8s):
            if other["metadata"].get("namespace") == "postfacto":
                assert not ingress_allowed(k8s, app, pod_labels(other), "postfacto", 3000)


def test_each_version_reaches_only_its_own_databases(k8s):
    for mine in SUFFIX.values():
        app = pod_labels(k8s.get("Deployment", f"postfacto-{mine}", "postfacto"))
        for theirs in SUFFIX.values():
            pg = pod_labels(k8s.get("StatefulSet", f"postgres-{theirs}", "postfacto"))
            rd = pod_labels(k8s.get("StatefulSet", f"redis-{theirs}", "postfacto"))
            same = mine == theirs
            assert ingress_allowed(k8s, pg, app, "postfacto", 5432) is same
            assert egress_allowed(k8s, app, pg, "postfacto", 5432) is same
            assert ingress_allowed(k8s, rd, app, "postfacto", 6379) is same
            assert egress_allowed(k8s, app, rd, "postfacto", 6379) is same


def test_gateway_cannot_reach_databases(k8s, gateway):
    gw = pod_labels(gateway)
    for sts in k8s.of("StatefulSet", "postfacto"):
        for port in (5432, 6379):
            assert not ingress_allowed(k8s, pod_labels(sts), gw, "ingress", port)


def test_dns_egress_allowed_for_every_postfacto_pod(k8s):
    dns = {"k8s-app": "kube-dns"}
    for o in workloads(k8s):
        if o["metadata"].get("namespace") != "postfacto":
            continue
        labels = pod_labels(o)
        assert egress_allowed(k8s, labels, dns, "kube-system", 53), o["metadata"]["name"]
        assert not egress_allowed(k8s, labels, {"k8s-app": "other"}, "kube-system", 53)


def test_backup_job_reaches_its_postgres_and_blob_storage_only(k8s):
    for mine in SUFFIX.values():
        backup = pod_labels(k8s.get("CronJob", f"postgres-backup-{mine}", "postfacto"))
        for theirs in SUFFIX.values():
            pg = pod_labels(k8s.get("StatefulSet", f"postgres-{theirs}", "postfacto"))
            same = mine == theirs
            assert ingress_allowed(k8s, pg, backup, "postfacto", 5432) is same
            assert egress_allowed(k8s, backup, pg, "postfacto", 5432) is same
        https = [r for p in policies_for(k8s, backup, "Egress") for r in p["spec"].get("egress", [])
                 if any("ipBlock" in t for t in r.get("to", []))]
        assert https and all([x["port"] for x in r["ports"]] == [443] for r in https)
        app = pod_labels(k8s.get("Deployment", f"postfacto-{mine}", "postfacto"))
        assert not any("ipBlock" in t for p in policies_for(k8s, app, "Egress")
                       for r in p["spec"].get("egress", []) for t in r.get("to", []))


def test_admin_job_reaches_its_own_postgres(k8s):
    for mine in SUFFIX.values():
        job = pod_labels(k8s.get("Job", f"create-admin-{mine}", "postfacto"))
        for theirs in SUFFIX.values():
            pg = pod_labels(k8s.get("StatefulSet", f"postgres-{theirs}", "postfacto"))
            assert ingress_allowed(k8s, pg, job, "postfacto", 5432) is (mine == theirs)
            assert egress_allowed(k8s, job, pg, "postfacto", 5432) is (mine == theirs)


def test_gateway_admin_port_not_public(k8s, gateway):
    [pol] = k8s.of("NetworkPolicy", "ingress")
    assert selector_matches(pol["spec"]["podSelector"], pod_labels(gateway))
    for rule in pol["spec"]["ingress"]:
        ports = [p["port"] for p in rule["ports"]]
        if 9901 in ports:
            assert rule.get("from"), "admin port open to every source"
    public = [r for r in pol["spec"]["ingress"] if not r.get("from")]
    assert sorted(p["port"] for r in public for p in r["ports"]) == [8080, 8443]


# --- general hygiene ------------------------------------------------------------

def test_every_container_has_resources_and_no_privilege_escalation(k8s):
    for o in workloads(k8s):
        spec = pod_spec(o)
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, o["metadata"]["name"]
        for c in spec["containers"] + spec.get("initContainers", []):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], c["name"]
            assert c["resources"]["requests"]["cpu"], c["name"]
            assert c["resources"]["limits"]["memory"], c["name"]


def test_images_are_pinned_to_a_tag(k8s):
    for o in workloads(k8s):
        spec = pod_spec(o)
        for c in spec["containers"] + spec.get("initContainers", []):
            assert re.search(r":[0-9][\w.-]*$", c["image"]), c["image"]
