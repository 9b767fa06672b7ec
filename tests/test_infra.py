"""infra/ is config only: check that it parses and agrees with the project
(pins in pyproject.toml, the env vars the README documents), that the image
build leaves secrets out (Docker's .dockerignore rules, re-implemented here),
and run the shell it carries (the RayJob's entrypoint, the MLflow server's
command) with stand-ins for Ray, pip and mlflow. No cluster, Docker or network:
what only a real cluster can show is listed in infra/README.md."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import posixpath
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
K8S = INFRA / "k8s"
DOCKERIGNORE = INFRA / "docker" / "Dockerfile.dockerignore"
# Images are tagged by the commit they were built from (infra/README.md, step 3).
IMAGE_TAG = re.compile(r"REPLACE_ME_GIT_SHA(-gpu)?")
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY|STORE_URI")


def _pin(package: str) -> str:
    """The version pinned for ``package`` in pyproject.toml (``name[extras]==X``)."""
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(rf'"{re.escape(package)}(?:\[[^\]]*\])?==([^"\s;]+)"', text)
    assert match, f"no {package}==X pin in pyproject.toml"
    return match.group(1)


def _docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _by_kind(path: Path) -> dict:
    return {d["kind"]: d for d in _docs(path)}


def _ray_versions_in_images(text: str) -> list[str]:
    return re.findall(r"rayproject/ray(?:-ml)?:(\d+\.\d+\.\d+)", text)


def _cluster_specs() -> list[dict]:
    cluster = _by_kind(K8S / "raycluster.yaml")["RayCluster"]["spec"]
    job = _by_kind(K8S / "rayjob.yaml")["RayJob"]["spec"]["rayClusterSpec"]
    return [cluster, job]


def test_every_yaml_parses():
    files = sorted(INFRA.rglob("*.yaml")) + sorted(INFRA.rglob("*.yml"))
    assert len(files) >= 6, files
    for path in files:
        assert _docs(path), f"{path} holds no document"


def test_ray_versions_match_pyproject():
    ray = _pin("ray")
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE).group(1)
    assert base.startswith("rayproject/ray:"), base
    assert _ray_versions_in_images(base) == [ray]

    for path in sorted(INFRA.rglob("*")):
        if path.is_file():
            for found in _ray_versions_in_images(path.read_text()):
                assert found == ray, f"{path}: rayproject/ray:{found} != ray=={ray}"

    for spec in _cluster_specs():
        assert str(spec["rayVersion"]) == ray


def test_k8s_kinds_and_api_versions():
    expected = {
        K8S / "raycluster.yaml": {"RayCluster": "ray.io/v1"},
        K8S / "rayjob.yaml": {"RayJob": "ray.io/v1"},
        K8S / "config.yaml": {"ConfigMap": "v1", "Secret": "v1"},
        INFRA / "mlflow" / "k8s.yaml": {"Secret": "v1", "Deployment": "apps/v1", "Service": "v1"},
    }
    for path, kinds in expected.items():
        found = {d["kind"]: d["apiVersion"] for d in _docs(path)}
        assert found == kinds, path


def test_rayjob_runs_dvc_repro_and_cleans_up():
    spec = _by_kind(K8S / "rayjob.yaml")["RayJob"]["spec"]
    assert re.search(r"(^|&&|;)\s*dvc repro\b", spec["entrypoint"]), spec["entrypoint"]
    assert "cd /home/ray/dul" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0


def test_k8s_env_comes_from_the_shared_config():
    config = _by_kind(K8S / "config.yaml")
    keys = set(config["ConfigMap"]["data"])
    assert {"MLFLOW_TRACKING_URI", "DUL_RAY_STORAGE"} <= keys
    for spec in _cluster_specs():
        assert spec["authOptions"]["mode"] == "token"
        assert str(spec["headGroupSpec"]["rayStartParams"]["num-cpus"]) == "0"
        for group in [spec["headGroupSpec"]] + spec["workerGroupSpecs"]:
            for container in group["template"]["spec"]["containers"]:
                refs = {r["configMapRef"]["name"] for r in container["envFrom"] if "configMapRef" in r}
                assert config["ConfigMap"]["metadata"]["name"] in refs


def test_mlflow_server_version_matches_pyproject():
    mlflow = _pin("mlflow")
    for path in [INFRA / "mlflow" / "compose.yaml", INFRA / "mlflow" / "k8s.yaml"]:
        text = path.read_text()
        found = re.findall(r"mlflow(?:\[auth\])?==([^\s\"']+)", text)
        assert found and set(found) == {mlflow}, (path, found)
        for flag in ["--backend-store-uri", "--artifacts-destination s3://", "--host 0.0.0.0",
                     "--allowed-hosts", "--cors-allowed-origins"]:
            assert flag in text, (path, flag)
    compose = yaml.safe_load((INFRA / "mlflow" / "compose.yaml").read_text())
    assert {"postgres", "mlflow"} <= set(compose["services"])
    assert "--backend-store-uri postgresql://" in " ".join(compose["services"]["mlflow"]["command"])
    secret = _by_kind(INFRA / "mlflow" / "k8s.yaml")["Secret"]["stringData"]
    assert secret["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")


def test_env_example_vars_are_documented():
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", (INFRA / "env.example").read_text(), re.MULTILINE)
    assert {"RAY_ADDRESS", "RAY_AUTH_TOKEN", "DUL_RAY_STORAGE", "MLFLOW_TRACKING_URI"} <= set(names)
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    documented = section + (INFRA / "README.md").read_text()
    missing = [n for n in names if f"`{n}`" not in documented]
    assert not missing, f"env.example names undocumented variables: {missing}"


def test_head_node_advertises_no_cpu():
    aws = yaml.safe_load((INFRA / "ray" / "cluster-aws.yaml").read_text())
    assert aws["provider"]["type"] == "aws"
    types = aws["available_node_types"]
    head = types[aws["head_node_type"]]
    assert head["resources"]["CPU"] == 0
    workers = [t for name, t in types.items() if name != aws["head_node_type"]]
    assert workers and all(0 <= w["min_workers"] <= w["max_workers"] for w in workers)
    assert any("--shm-size" in opt for opt in aws["docker"]["run_options"])


def test_dockerfile_installs_the_project_and_ignores_local_state():
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    assert re.search(r"pip install --no-cache-dir -e \.", dockerfile)
    assert re.search(r"^WORKDIR\s+/home/ray/dul\s*$", dockerfile, re.MULTILINE)
    # BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile when the
    # context (the repo root) has no .dockerignore of its own.
    rules = _dockerignore()
    for path in [".venv/bin/python", "ray_results/x", "mlruns/0/meta.yaml", "mlflow.db", "mlartifacts/x",
                 "data/prepared/train.parquet", "models/stack.pt", "index/codes.npz", ".dvc/cache/files/md5/ab",
                 ".dvc/tmp/lock", "components/__pycache__/x.cpython-311.pyc"]:
        assert _excluded(rules, path), path


def test_dockerfile_installs_cpu_torch_before_the_project():
    lines = (INFRA / "docker" / "Dockerfile").read_text().splitlines()

    def first(pattern: str) -> int:
        found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert found, pattern
        return found[0]

    torch = re.escape(f"torch=={_pin('torch')}")
    cpu = first(rf"pip install .*{torch} --index-url https://download\.pytorch\.org/whl/cpu\b")
    project = first(r"pip install --no-cache-dir -e \.")
    # pip then finds torch satisfied and does not fetch the CUDA wheel from PyPI.
    assert cpu < project < len(lines)
    assert cpu < first(r"^COPY\b"), "torch's layer should not depend on the code"
    # One build argument picks the base image and the wheel together.
    assert first(r"^ARG VARIANT=cpu$") < first(r"^FROM rayproject/ray:[\d.]+-py311-\$\{VARIANT\}$")
    assert re.search(rf"gpu\).*pip install --no-cache-dir {torch}\s*;;", "\n".join(lines))


# --- Docker's .dockerignore rules -----------------------------------------
# moby/patternmatcher as BuildKit applies it: Go's filepath.Match for each path
# element (`*`, `?`, `[...]`), `**` for any number of elements (zero too), a
# pattern matches a path or any of its parent directories, `!` re-includes,
# the last matching line wins. A pattern without `**/` matches at the root only.


def _docker_pattern(pattern: str) -> re.Pattern:
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            i += 2 + pattern.startswith("/", i + 2)
            regex += ".*" if i == len(pattern) else "(?:.*/)?"
            continue
        char = pattern[i]
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "[":  # a class passes through, as in moby (`[^…]` negates)
            end = pattern.index("]", i + 1)
            regex += pattern[i:end + 1]
            i = end
        elif char == "\\":
            i += 1
            regex += re.escape(pattern[i])
        else:
            regex += re.escape(char)
        i += 1
    return re.compile(regex)


def _dockerignore(text: str | None = None) -> list[tuple[bool, re.Pattern]]:
    """(re-include?, pattern) per line, as BuildKit reads a .dockerignore."""
    rules = []
    for line in (DOCKERIGNORE.read_text() if text is None else text).splitlines():
        if line.startswith("#") or not line.strip():
            continue
        line = line.strip()
        keep = line.startswith("!")
        pattern = posixpath.normpath(line[1:].strip() if keep else line)
        rules.append((keep, _docker_pattern(pattern.removeprefix("/"))))
    return rules


def _excluded(rules: list[tuple[bool, re.Pattern]], path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for keep, pattern in rules:
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            excluded = not keep
    return excluded


def test_dockerignore_matcher_follows_dockers_documented_examples():
    # The examples of docs.docker.com/build/concepts/context/#dockerignore-files.
    rules = _dockerignore("# comment\n*/temp*\n*/*/temp*\ntemp?\n")
    assert _excluded(rules, "somedir/temporary.txt") and _excluded(rules, "somedir/temp/x")
    assert _excluded(rules, "somedir/subdir/temporary.txt") and _excluded(rules, "tempa")
    assert not _excluded(rules, "temporary.txt") and not _excluded(rules, "a/b/c/temp")
    rules = _dockerignore("*.md\n!README*.md\nREADME-secret.md\n")
    assert _excluded(rules, "notes.md") and _excluded(rules, "README-secret.md")
    assert not _excluded(rules, "README.md") and not _excluded(rules, "a/notes.md")
    rules = _dockerignore("**/*.go\n/build/\n")
    assert _excluded(rules, "main.go") and _excluded(rules, "a/b/main.go") and _excluded(rules, "build/x")


def test_dockerignore_keeps_secrets_out_of_the_image_and_the_code_in():
    rules = _dockerignore()
    for secret in ["infra/.env", ".dvc/config.local", "x/.env", ".env", "infra/.env.prod",
                   "deploy/key.pem", "tls.key", ".netrc"]:
        assert _excluded(rules, secret), f"{secret} would be copied into the image"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    needed = [f for f in tracked.stdout.splitlines() if f.startswith(("components/", "pipelines/"))]
    needed += ["pyproject.toml", "dvc.yaml", "dvc.lock", "params.yaml", ".dvc/config", "README.md",
               "infra/env.example", ".git/HEAD"]
    assert len(needed) > 10
    kept_out = [f for f in needed if _excluded(rules, f)]
    assert not kept_out, f"the image needs {kept_out}"


def _secrets_table() -> list[str]:
    """The paths in the first column of infra/README.md's "Secrets and trust" table."""
    section = (INFRA / "README.md").read_text().split("## Secrets and trust", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [path for row in rows for path in re.findall(r"`([^`]+)`", row.split("|")[1])]


def _samples(name: str) -> list[str]:
    """Concrete paths a table entry stands for: a glob or bare name anywhere in the tree."""
    if "/" in name and "*" not in name:
        return [name]
    name = name.replace("*", "x")
    return [name, f"infra/{name}", f"a/b/{name}"]


def _placeholder_violations(docs: list) -> list[str]:
    """Secret-looking values in parsed YAML that are not REPLACE_ME placeholders."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and SECRET_KEY.search(str(key)) and "REPLACE_ME" not in value:
                    found.append(f"{key}: {value}")
                walk(value)
        elif isinstance(node, list):
            for item in node:
                match = isinstance(item, str) and re.match(r"--env (\w+)=(.*)", item)
                if match and SECRET_KEY.search(match[1]) and "REPLACE_ME" not in match[2]:
                    found.append(item)
                walk(item)

    walk(docs)
    return found


def test_files_named_as_holding_secrets_stay_out_of_the_image():
    rules = _dockerignore()
    table = _secrets_table()
    assert {"infra/.env", ".dvc/config.local"} <= set(table), table
    # Also any secret store the docs name elsewhere (copy targets, credentials files).
    store = re.compile(r"(?:^|/)\.env(?:\.[\w*]+)?$|config\.local$|\.(?:pem|key)$")
    readme = re.findall(r"`([^`\s]+)`", (INFRA / "README.md").read_text())
    example = re.findall(r"[\w./*-]+", (INFRA / "env.example").read_text())
    named = sorted({p for p in readme + example if store.search(p)} | set(table))
    tracked = set(subprocess.run(["git", "ls-files", "--", *named], cwd=REPO, capture_output=True,
                                 text=True, check=True).stdout.split())
    for name in named:
        if name in tracked:  # a template: only placeholders, the values go elsewhere
            assert not _placeholder_violations(_docs(REPO / name)), name
            continue
        for sample in _samples(name):
            assert _excluded(rules, sample), f"{sample} (named as holding a secret) is not in {DOCKERIGNORE.name}"
        if _samples(name) == [name]:  # one named file: git must ignore it too
            ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=REPO)
            assert ignored.returncode == 0, f"{name} is not ignored by git"


def test_secret_templates_hold_only_placeholders():
    for path in [K8S / "config.yaml", INFRA / "mlflow" / "k8s.yaml", INFRA / "ray" / "cluster-aws.yaml"]:
        assert not _placeholder_violations(_docs(path)), path
    # The check does see a real value, in either shape.
    assert _placeholder_violations([{"stringData": {"AWS_SECRET_ACCESS_KEY": "abc"}}])
    assert _placeholder_violations([{"run_options": ["--env RAY_AUTH_TOKEN=abc"]}])


# --- images, GPU groups ----------------------------------------------------


def _k8s_containers(spec: dict) -> list[tuple[str, dict]]:
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return [(name, c) for name, group in groups for c in group["template"]["spec"]["containers"]]


def test_images_are_tagged_by_the_commit():
    ray = _pin("ray")
    aws = yaml.safe_load((INFRA / "ray" / "cluster-aws.yaml").read_text())
    images = [aws["docker"]["image"]] + [t["docker"]["worker_image"]
                                         for t in aws["available_node_types"].values() if "docker" in t]
    for spec in _cluster_specs():
        for _, container in _k8s_containers(spec):
            images.append(container["image"])
            # Safe with a code-derived tag: a new commit is a new tag, never a stale cached one.
            assert container["imagePullPolicy"] in {"IfNotPresent", "Always"}
    assert len(images) == 8, images
    for image in images:
        tag = image.rsplit(":", 1)[-1]
        assert IMAGE_TAG.fullmatch(tag) and tag != ray, image
    assert aws["docker"]["pull_before_run"] is True


def test_kuberay_has_an_autoscaled_gpu_group():
    for spec in _cluster_specs():
        assert spec["enableInTreeAutoscaling"] is True  # else a 0-replica group never starts
        gpu = [g for g in spec["workerGroupSpecs"]
               if any("nvidia.com/gpu" in c["resources"]["limits"] for c in g["template"]["spec"]["containers"])]
        assert len(gpu) == 1, [g["groupName"] for g in spec["workerGroupSpecs"]]
        group = gpu[0]
        assert group["minReplicas"] == 0 <= group["replicas"] <= group["maxReplicas"] and group["maxReplicas"] >= 1
        (container,) = group["template"]["spec"]["containers"]
        assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"
        assert container["image"].endswith("-gpu")
        cpu = [c["image"] for name, c in _k8s_containers(spec) if name != group["groupName"]]
        assert cpu and not any(image.endswith("-gpu") for image in cpu)


def test_ray_up_has_a_gpu_node_type_and_matches_rays_schema():
    aws = yaml.safe_load((INFRA / "ray" / "cluster-aws.yaml").read_text())
    ray_dir = importlib.util.find_spec("ray").submodule_search_locations[0]  # not imported: only its schema
    schema = json.loads((Path(ray_dir) / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(aws, schema)
    gpu = [t for t in aws["available_node_types"].values() if t["resources"].get("GPU")]
    assert len(gpu) == 1
    assert gpu[0]["resources"]["GPU"] == 1 and gpu[0]["min_workers"] == 0 < gpu[0]["max_workers"]
    assert gpu[0]["docker"]["worker_image"].endswith("-gpu")
    assert sum(t.get("max_workers", 0) for t in aws["available_node_types"].values()) <= aws["max_workers"]


# --- the RayJob's DVC remote guard ------------------------------------------
# KubeRay's submitter runs `bash -c "... ray job submit --address URL -- <entrypoint> ; ..."`
# (ray-operator/controllers/ray/common/job.go pastes the entrypoint unquoted);
# `ray job submit` shlex-joins the words after `--` and the job supervisor runs
# that with a shell. A stand-in `ray` reproduces the two steps.
FAKE_RAY = """import shlex, subprocess, sys
args = sys.argv[1:]
sys.exit(subprocess.call(shlex.join(args[args.index("--") + 1:]), shell=True))
"""


def _run_rayjob(repo: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    entrypoint = _by_kind(K8S / "rayjob.yaml")["RayJob"]["spec"]["entrypoint"]
    assert "/home/ray/dul" in entrypoint and "'" not in str(repo)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ray").write_text(f"#!{sys.executable}\n{FAKE_RAY}")
    (bin_dir / "ray").chmod(0o755)
    submitter = " ".join(["ray", "job", "submit", "--address", "http://127.0.0.1:8265", "--",
                          entrypoint.replace("/home/ray/dul", str(repo)), ";"])
    env = {**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    cwd = tmp_path / "submitter-pod"
    cwd.mkdir()
    return subprocess.run(["bash", "-c", submitter], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def _dvc_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True, env=env)
    (repo / "in.txt").write_text("hi\n")  # the run cache keeps only stages with a dependency
    (repo / "dvc.yaml").write_text("stages:\n  hello:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n"
                                   "    outs: [out.txt]\n")
    return repo


def test_rayjob_refuses_to_run_without_a_dvc_remote(tmp_path):
    repo = _dvc_repo(tmp_path)
    result = _run_rayjob(repo, tmp_path)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no DVC remote configured: "), result.stderr
    assert "up to date" not in result.stdout and not (repo / "out.txt").exists()


def test_rayjob_runs_the_pipeline_with_a_dvc_remote(tmp_path):
    repo = _dvc_repo(tmp_path)
    remote = tmp_path / "remote"
    subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "-q", "-d", "x", str(remote)],
                   cwd=repo, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    result = _run_rayjob(repo, tmp_path)
    assert result.returncode == 0, (result.stdout, result.stderr)
    # With --allow-missing, DVC 3.67 skips a stage that has no dvc.lock entry yet.
    assert (repo / "out.txt").read_text() == "hi\n", "the stage did not run"
    assert (remote / "runs").is_dir(), "dvc push --run-cache did not run"


# --- the MLflow server -------------------------------------------------------
GOOD_SECRETS = {"MLFLOW_DB_PASSWORD": "0123456789abcdef", "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password-0123",
                "MLFLOW_FLASK_SERVER_SECRET_KEY": "fedcba9876543210"}


def _compose() -> dict:
    return yaml.safe_load((INFRA / "mlflow" / "compose.yaml").read_text())


def _interpolate(text: str, env: dict) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` (`$$` is a literal `$`)."""
    def one(match):
        name, op, arg = match["name"], match["op"], match["arg"]
        if op == ":?" and not env.get(name):
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        return env.get(name) or (arg if op == ":-" else "")
    return re.sub(r"\$\{(?P<name>\w+)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}", one,
                  text.replace("$$", "\0")).replace("\0", "$")


def test_compose_binds_to_loopback_and_requires_its_secrets():
    mlflow = _compose()["services"]["mlflow"]
    (port,) = mlflow["ports"]
    assert _interpolate(port, GOOD_SECRETS) == "127.0.0.1:5000:5000"
    assert _interpolate(port, {**GOOD_SECRETS, "MLFLOW_BIND": "0.0.0.0"}) == "0.0.0.0:5000:5000"
    text = (INFRA / "mlflow" / "compose.yaml").read_text()
    for name in GOOD_SECRETS:
        uses = re.findall(rf"(?<!\$)\$\{{{name}(:.)?", text)  # `$${…}` is the container's
        assert uses and set(uses) == {":?"}, (name, uses)  # never a default, REPLACE_ME or other
        with pytest.raises(ValueError, match=name):
            _interpolate(json.dumps(_compose()), {k: v for k, v in GOOD_SECRETS.items() if k != name})
    _interpolate(json.dumps(_compose()), GOOD_SECRETS)  # compose's values, not its comments
    assert "REPLACE_ME}" not in text and ":-REPLACE_ME" not in text


def _run_server_command(script: str, env: dict, tmp_path: Path) -> tuple[subprocess.CompletedProcess, list]:
    """Run the container's command with stand-ins for pip and mlflow; returns mlflow's argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "pip").write_text("#!/bin/sh\nexit 0\n")
    argv = tmp_path / "mlflow-argv.json"
    (bin_dir / "mlflow").write_text(f"#!{sys.executable}\nimport json, sys\n"
                                    f"json.dump(sys.argv[1:], open({str(argv)!r}, 'w'))\n")
    for tool in ("pip", "mlflow"):
        (bin_dir / tool).chmod(0o755)
    argv.unlink(missing_ok=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "basic_auth.ini"), **env}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    return result, json.loads(argv.read_text()) if argv.exists() else []


def _auth_config(path: Path) -> dict:
    # How mlflow/server/auth/config.py reads it: ConfigParser, section [mlflow].
    parser = configparser.ConfigParser()
    assert parser.read(path)
    return dict(parser["mlflow"])


def _assert_refuses(script: str, env: dict, name: str, tmp_path: Path):
    result, argv = _run_server_command(script, env, tmp_path)
    assert result.returncode == 2 and not argv, (name, result.stderr)
    assert result.stderr.startswith(f"error: {name} ") and len(result.stderr.splitlines()) == 1


def test_compose_server_refuses_placeholders_and_turns_on_basic_auth(tmp_path):
    script = _compose()["services"]["mlflow"]["command"][2].replace("$$", "$")
    for name in GOOD_SECRETS:
        _assert_refuses(script, {**GOOD_SECRETS, name: "REPLACE_ME"}, name, tmp_path)
    _assert_refuses(script, {**GOOD_SECRETS, "MLFLOW_DB_PASSWORD": "p@ss/word:x"}, "MLFLOW_DB_PASSWORD", tmp_path)
    result, argv = _run_server_command(script, GOOD_SECRETS, tmp_path)
    assert result.returncode == 0, result.stderr
    assert argv[:3] == ["server", "--app-name", "basic-auth"], argv
    assert argv[argv.index("--host") + 1] == "0.0.0.0"  # inside the container; compose publishes on loopback
    uri = "postgresql://mlflow:0123456789abcdef@postgres:5432/mlflow"
    assert argv[argv.index("--backend-store-uri") + 1] == uri
    config = _auth_config(tmp_path / "basic_auth.ini")
    assert config["database_uri"] == uri and config["admin_username"] == "admin"
    assert "admin_password" not in config  # from MLFLOW_AUTH_ADMIN_PASSWORD, not written to disk


def test_k8s_server_refuses_placeholders_and_turns_on_basic_auth(tmp_path):
    deployment = _by_kind(INFRA / "mlflow" / "k8s.yaml")["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["bash", "-c"]
    (script,) = container["args"]
    assert "$(" not in script  # Kubernetes would expand $(NAME) in args
    assert {e["name"]: e["value"] for e in container["env"]}["MLFLOW_AUTH_CONFIG_PATH"]
    secret = _by_kind(INFRA / "mlflow" / "k8s.yaml")["Secret"]
    assert [r["secretRef"]["name"] for r in container["envFrom"]] == [secret["metadata"]["name"]]
    assert not any(r["secretRef"].get("optional") for r in container["envFrom"])
    good = {"MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow:pa%40ss@db:5432/mlflow",
            "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password-0123", "MLFLOW_FLASK_SERVER_SECRET_KEY": "0123456789ab"}
    assert set(good) <= set(secret["stringData"])
    for name in good:  # the Secret as shipped, then one placeholder at a time
        _assert_refuses(script, {**good, name: secret["stringData"][name]}, name, tmp_path)
    result, argv = _run_server_command(script, good, tmp_path)
    assert result.returncode == 0, result.stderr
    assert argv[:3] == ["server", "--app-name", "basic-auth"], argv
    assert _auth_config(tmp_path / "basic_auth.ini")["database_uri"] == good["MLFLOW_BACKEND_STORE_URI"]


def test_clients_have_mlflow_credentials():
    names = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    assert names <= set(re.findall(r"^(\w+)=", (INFRA / "env.example").read_text(), re.MULTILINE))
    secrets = {d["metadata"]["name"]: d for d in _docs(K8S / "config.yaml") if d["kind"] == "Secret"}
    assert names <= set(secrets["dul-mlflow"]["stringData"])
    for spec in _cluster_specs():
        for _, container in _k8s_containers(spec):
            assert "dul-mlflow" in {r["secretRef"]["name"] for r in container["envFrom"] if "secretRef" in r}
    aws = yaml.safe_load((INFRA / "ray" / "cluster-aws.yaml").read_text())
    assert {o.split()[1].split("=")[0] for o in aws["docker"]["run_options"] if o.startswith("--env ")} >= names


def test_readme_warns_that_registered_models_run_code():
    readme = (INFRA / "README.md").read_text()
    section = readme.split("## Secrets and trust", 1)[1].split("\n## ", 1)[0]
    assert "**Registered models run code.**" in section
    assert re.search(r"Only trusted users may write to the\s+registry", section)
    # The remote is set up before the image that carries .dvc/config is built.
    steps = readme.split("## Running on a cluster", 1)[1]
    assert steps.index("**Add the DVC remote**") < steps.index("**Build and push the images**")
