"""Shared fixtures of the deployment checks (run by deploy/check.sh).

The AKS overlay is rendered from a temporary copy of deploy/k8s after
deploy/scripts/make-secrets.sh has written fresh secret env files there, so
nothing secret is needed in (or written to) the repository.
"""
import json
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
TOOLS = DEPLOY / "tools"
TERRAFORM = DEPLOY / "terraform"
MAKE_SECRETS = DEPLOY / "scripts" / "make-secrets.sh"
VERSIONS = ("4.1.0", "4.2.0")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def copy_k8s(dst):
    """Copies deploy/k8s without any secret env file lying in the work tree."""
    shutil.copytree(K8S, dst, ignore=shutil.ignore_patterns("*.env"))
    # azure.env is committed, non-secret site configuration: keep it.
    shutil.copy(K8S / "overlays" / "aks" / "azure.env", dst / "overlays" / "aks" / "azure.env")
    return dst


def make_secrets(k8s_dir, *args, env=None):
    e = dict(os.environ)
    e.pop("AZURE_STORAGE_KEY", None)
    e.update(env or {})
    res = run(["bash", str(MAKE_SECRETS), *args, str(k8s_dir)], env=e)
    assert res.returncode == 0, res.stderr
    return res


def kustomize(path):
    res = run(["kubectl", "kustomize", str(path)])
    return res


@pytest.fixture(scope="session")
def k8s_copy(tmp_path_factory):
    dst = copy_k8s(tmp_path_factory.mktemp("render") / "k8s")
    make_secrets(dst, env={"AZURE_STORAGE_KEY": "dGVzdC1rZXk="})
    return dst


@pytest.fixture(scope="session")
def rendered_yaml(k8s_copy):
    res = kustomize(k8s_copy / "overlays" / "aks")
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture(scope="session")
def objects(rendered_yaml):
    docs = [d for d in yaml.safe_load_all(rendered_yaml) if d]
    assert docs, "kustomize rendered nothing"
    return docs


class Objects:
    def __init__(self, docs):
        self.docs = docs

    def of(self, kind, namespace=None):
        return [d for d in self.docs if d["kind"] == kind
                and (namespace is None or d["metadata"].get("namespace") == namespace)]

    def get(self, kind, name, namespace=None):
        found = [d for d in self.of(kind, namespace) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind} {name}: found {len(found)}"
        return found[0]

    def named_prefix(self, kind, prefix, namespace=None):
        """Generated objects (ConfigMaps, Secrets) carry a hash suffix."""
        found = [d for d in self.of(kind, namespace) if d["metadata"]["name"].startswith(prefix + "-")
                 or d["metadata"]["name"] == prefix]
        assert len(found) == 1, f"{kind} {prefix}*: found {len(found)}"
        return found[0]


@pytest.fixture(scope="session")
def k8s(objects):
    return Objects(objects)


@pytest.fixture(scope="session")
def node_tools():
    for mod in ("kubernetes-models", "@cdktf/hcl2json", "yaml"):
        if not (TOOLS / "node_modules" / mod).is_dir():
            pytest.fail(f"deploy/tools/node_modules/{mod} missing: run deploy/check.sh "
                        "(it runs npm ci --prefix deploy/tools)")
    return TOOLS


@pytest.fixture(scope="session")
def terraform(node_tools):
    files = sorted(str(p.relative_to(REPO)) for p in TERRAFORM.rglob("*.tf")
                   if ".terraform" not in p.parts)
    assert files, "no .tf files"
    res = run(["node", str(node_tools / "hcl2json.mjs"), *files], cwd=REPO)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def switchyard_config_path():
    kust = yaml.safe_load((K8S / "base" / "switchyard" / "kustomization.yaml").read_text())
    gens = [g for g in kust.get("configMapGenerator", []) if g["name"] == "switchyard-config"]
    assert len(gens) == 1
    files = gens[0]["files"]
    assert files == ["switchyard.yaml"]
    return K8S / "base" / "switchyard" / files[0]
