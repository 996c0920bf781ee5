"""Rendering the AKS overlay, secrets generation and offline schema validation."""
import json
import subprocess

import pytest
import yaml

from conftest import (DEPLOY, K8S, REPO, TOOLS, VERSIONS, copy_k8s, kustomize,
                      make_secrets, run)


def read_env(path):
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def secret_files(k8s_dir):
    return sorted(p for p in k8s_dir.rglob("secrets/*.env"))


def test_overlay_renders_with_generated_secrets(objects):
    kinds = {o["kind"] for o in objects}
    for kind in ("Namespace", "Deployment", "StatefulSet", "Service", "ConfigMap", "Secret",
                 "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
                 "PersistentVolumeClaim", "StorageClass", "Job", "CronJob"):
        assert kind in kinds, kind


def test_overlay_does_not_render_without_secret_files(tmp_path):
    """The secretGenerators need the env files: nothing secret is committed."""
    dst = copy_k8s(tmp_path / "k8s")
    res = kustomize(dst / "overlays" / "aks")
    assert res.returncode != 0
    assert "secrets/" in res.stderr and ".env" in res.stderr


def test_make_secrets_writes_every_file_random_and_private(tmp_path):
    dst = copy_k8s(tmp_path / "k8s")
    make_secrets(dst)
    files = secret_files(dst)
    rel = sorted(str(p.relative_to(dst)) for p in files)
    assert rel == ["base/postfacto/secrets/admin.env", "base/postfacto/secrets/app.env",
                   "base/postfacto/secrets/backup.env",
                   "base/postfacto/v4.1.0/secrets/db.env", "base/postfacto/v4.2.0/secrets/db.env"]
    for p in files:
        assert p.stat().st_mode & 0o077 == 0, f"{p} is readable by others"
    app = read_env(dst / "base/postfacto/secrets/app.env")
    assert len(app["SECRET_KEY_BASE"]) >= 128
    dbs = [read_env(dst / f"base/postfacto/v{v}/secrets/db.env") for v in VERSIONS]
    for db in dbs:
        assert len(db["POSTGRES_PASSWORD"]) >= 32 and len(db["REDIS_PASSWORD"]) >= 32
        assert db["POSTGRES_PASSWORD"] != db["REDIS_PASSWORD"]
    assert dbs[0]["POSTGRES_PASSWORD"] != dbs[1]["POSTGRES_PASSWORD"]
    admin = read_env(dst / "base/postfacto/secrets/admin.env")
    assert admin["ADMIN_EMAIL"] and len(admin["ADMIN_PASSWORD"]) >= 24


def test_make_secrets_is_idempotent_and_force_rotates(tmp_path):
    dst = copy_k8s(tmp_path / "k8s")
    make_secrets(dst)
    first = {p: p.read_text() for p in secret_files(dst)}
    make_secrets(dst)
    assert {p: p.read_text() for p in secret_files(dst)} == first
    make_secrets(dst, "--force")
    second = {p: p.read_text() for p in secret_files(dst)}
    assert second.keys() == first.keys()
    db = dst / "base/postfacto/v4.1.0/secrets/db.env"
    assert second[db] != first[db]


def test_make_secrets_takes_storage_key_from_environment(tmp_path):
    dst = copy_k8s(tmp_path / "k8s")
    make_secrets(dst, env={"AZURE_STORAGE_KEY": "a2V5"})
    assert read_env(dst / "base/postfacto/secrets/backup.env") == {"AZURE_STORAGE_KEY": "a2V5"}


def test_generated_secret_files_are_ignored_by_git(tmp_path):
    paths = ["deploy/k8s/base/postfacto/secrets/app.env",
             "deploy/k8s/base/postfacto/v4.1.0/secrets/db.env",
             "deploy/tools/node_modules/yaml/package.json",
             "deploy/terraform/terraform.tfvars",
             "deploy/terraform/terraform.tfstate"]
    res = run(["git", "check-ignore", "--no-index", *paths], cwd=REPO)
    assert sorted(res.stdout.split()) == sorted(paths), res.stdout + res.stderr
    res = run(["git", "check-ignore", "--no-index", "deploy/terraform/example.tfvars",
               "deploy/k8s/overlays/aks/azure.env"], cwd=REPO)
    assert res.stdout.strip() == ""


def test_no_secret_files_or_literals_committed():
    res = run(["git", "ls-files", "deploy", "tests/deploy"], cwd=REPO)
    assert res.returncode == 0
    tracked = res.stdout.split()
    assert not [p for p in tracked if "/secrets/" in p and p.endswith(".env")]
    for kust in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(kust.read_text())
        for gen in doc.get("secretGenerator", []):
            assert "literals" not in gen and "files" not in gen, f"{kust}: {gen['name']}"
            assert all(e.startswith("secrets/") for e in gen["envs"]), f"{kust}: {gen['name']}"
    for f in K8S.rglob("*.yaml"):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc.get("kind") == "Secret":
                pytest.fail(f"{f} commits a Secret object")


def test_rendered_secrets_come_only_from_generators(k8s):
    names = sorted(s["metadata"]["name"].rsplit("-", 1)[0] for s in k8s.of("Secret"))
    assert names == ["backup-storage", "postfacto-admin", "postfacto-app",
                     "postfacto-db-4-1-0", "postfacto-db-4-2-0"]


# --- offline schema validation with kubernetes-models ---------------------

def validate(node_tools, text):
    return subprocess.run(["node", str(node_tools / "validate.mjs")], input=text,
                          capture_output=True, text=True)


def test_every_rendered_object_is_valid_against_kubernetes_schemas(node_tools, rendered_yaml, objects):
    res = validate(node_tools, rendered_yaml)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(objects)} valid, 0 invalid" in res.stdout
    assert "SKIP" not in res.stdout


def test_validator_rejects_an_invalid_object(node_tools, objects):
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replicas"] = "two"
    del broken["spec"]["selector"]
    res = validate(node_tools, yaml.safe_dump(broken))
    assert res.returncode == 1
    assert "replicas must be integer" in res.stdout
    assert "required property selector" in res.stdout


def test_validator_rejects_a_broken_hpa_behaviour(node_tools, k8s):
    hpa = json.loads(json.dumps(k8s.get("HorizontalPodAutoscaler", "switchyard", "ingress")))
    del hpa["spec"]["behavior"]["scaleUp"]["policies"][0]["periodSeconds"]
    res = validate(node_tools, json.dumps([hpa]))
    assert res.returncode == 1 and "periodSeconds" in res.stdout


def test_validator_rejects_unknown_kinds(node_tools):
    text = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    res = validate(node_tools, text)
    assert res.returncode == 1 and "unknown apiVersion/kind" in res.stdout


def test_validator_rejects_empty_input(node_tools):
    res = validate(node_tools, "")
    assert res.returncode == 1


def test_keda_example_is_not_in_any_kustomization():
    example = K8S / "examples" / "keda-scaledobject.yaml"
    doc = yaml.safe_load(example.read_text())
    assert doc["kind"] == "ScaledObject"
    assert doc["spec"]["scaleTargetRef"]["name"] == "switchyard"
    assert any(t["type"] == "prometheus" and "rate(" in t["metadata"]["query"]
               for t in doc["spec"]["triggers"])
    for kust in K8S.rglob("kustomization.yaml"):
        assert "examples" not in kust.read_text(), kust


def test_validator_rejects_secret_data_that_is_not_base64(node_tools):
    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {K: 'not base64!'}\n"
    res = validate(node_tools, text)
    assert res.returncode == 1 and "byte" in res.stdout
