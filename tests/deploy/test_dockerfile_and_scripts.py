"""The Switchyard Dockerfile (consistent with the Makefile) and the shell scripts."""
import json
import re
import shutil

import pytest

from conftest import DEPLOY, REPO, run

# Makefile -l flags -> Debian -dev package (build) and runtime library package.
LIBS = {"ssl": ("libssl-dev", "libssl3"), "crypto": ("libssl-dev", "libssl3"),
        "yaml": ("libyaml-dev", "libyaml-0-2"), "curl": ("libcurl4-openssl-dev", "libcurl4"),
        "jansson": ("libjansson-dev", "libjansson4"),
        "nghttp2": ("libnghttp2-dev", "libnghttp2-14"), "uring": ("liburing-dev", "liburing2"),
        "pthread": (None, None), "dl": (None, None)}
# Loaded at run time with dlopen() rather than linked: the headers at build time, the library at run
# time (the ACME client's libcurl).
DLOPENED = {"libcurl4-openssl-dev": "libcurl4"}


def stages():
    """[(base image, stage name, [instruction lines])], continuation lines joined."""
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?$", line, re.I)
        if m:
            out.append((m.group(1), m.group(2), []))
        else:
            assert out, "instruction before FROM"
            out[-1][2].append(line)
    return out


def makefile_libs():
    text = (REPO / "Makefile").read_text()
    m = re.search(r"^LIBS\s*:?=\s*(.*)$", text, re.M)
    assert m, "LIBS not found in Makefile"
    return re.findall(r"-l(\w+)", m.group(1))


def apt_packages(lines):
    pkgs = set()
    for line in lines:
        if line.startswith("RUN") and "apt-get install" in line:
            seg = line.split("apt-get install", 1)[1].split("&&", 1)[0]
            pkgs |= {w for w in seg.split() if not w.startswith("-")}
    return pkgs


def test_multi_stage_debian_build_and_slim_runtime():
    st = stages()
    assert len(st) == 2
    assert st[0][0] == "debian:12" and st[0][1]
    assert st[1][0] == "debian:12-slim"
    assert any(re.match(r"RUN\s+make\b", line) for line in st[0][2])


def test_build_stage_has_every_library_the_makefile_links():
    libs = makefile_libs()
    assert libs, "no -l flags in Makefile LIBS"
    build = apt_packages(stages()[0][2])
    for lib in libs:
        assert lib in LIBS, f"Makefile links -l{lib}: map it to a Debian package here and in the Dockerfile"
        dev = LIBS[lib][0]
        assert dev is None or dev in build, dev
    for dev in DLOPENED:
        assert dev in build, dev


def test_runtime_stage_has_only_the_runtime_libraries():
    runtime = apt_packages(stages()[1][2])
    wanted = ({LIBS[lib][1] for lib in makefile_libs() if LIBS[lib][1]} | {"ca-certificates"}
              | set(DLOPENED.values()))
    assert runtime == wanted
    assert not any(p.endswith("-dev") for p in runtime)


def test_runtime_copies_the_makefile_binary():
    mk = (REPO / "Makefile").read_text()
    assert re.search(r"^BUILD\s*\?=\s*build$", mk, re.M)
    assert re.search(r"^all:\s*\$\(BUILD\)/switchyard", mk, re.M)
    copies = [line for line in stages()[1][2] if line.startswith("COPY")]
    assert copies == ["COPY --from=build /src/build/switchyard /usr/local/bin/switchyard"]
    workdir = [line for line in stages()[0][2] if line.startswith("WORKDIR")]
    assert workdir == ["WORKDIR /src"]


def test_runtime_user_ports_and_entrypoint():
    lines = stages()[1][2]
    assert "USER 65532:65532" in lines or "USER 65532" in lines
    [expose] = [line for line in lines if line.startswith("EXPOSE")]
    assert expose.split()[1:] == ["8080", "8443", "9901"]
    [entry] = [line for line in lines if line.startswith("ENTRYPOINT")]
    assert json.loads(entry.split(None, 1)[1]) == ["/usr/local/bin/switchyard", "-c",
                                                   "/etc/switchyard/switchyard.yaml"]
    # The entrypoint's config path is where the Deployment mounts the ConfigMap.
    user_idx = lines.index(next(line for line in lines if line.startswith("USER")))
    assert user_idx > max(i for i, line in enumerate(lines) if line.startswith("RUN"))


def test_dockerignore_keeps_the_context_small_and_secret_free():
    entries = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for must in (".git", "build", "deploy", "**/node_modules", "**/secrets/*.env"):
        assert must in entries, must
    for needed in ("src", "Makefile"):
        assert needed not in entries, needed


def shell_scripts():
    return sorted(p for p in DEPLOY.rglob("*.sh") if "node_modules" not in p.parts)


def test_there_are_shell_scripts_to_check():
    names = {p.name for p in shell_scripts()}
    assert {"check.sh", "make-secrets.sh"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_shellcheck_clean(script):
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is required")
    res = run(["shellcheck", "-x", str(script)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_shellcheck_catches_a_bad_script(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nrm -rf $1/*\n")
    assert run(["shellcheck", str(bad)]).returncode != 0


def test_check_sh_installs_tools_and_runs_these_tests():
    text = (DEPLOY / "check.sh").read_text()
    assert "npm ci --prefix" in text
    assert "/usr/bin/python3 -m pytest -q tests/deploy" in text
    lock = json.loads((DEPLOY / "tools" / "package-lock.json").read_text())
    deps = lock["packages"][""]["dependencies"]
    assert {"kubernetes-models", "@cdktf/hcl2json"} <= set(deps)
