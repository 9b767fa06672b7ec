"""infra/ is config only: check that it parses and agrees with the project
(pins in pyproject.toml, the env vars the README documents). No cluster,
Docker or network: what only a real cluster can show is listed in infra/README.md."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
K8S = INFRA / "k8s"


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

    aws = yaml.safe_load((INFRA / "ray" / "cluster-aws.yaml").read_text())
    image = aws["docker"]["image"]
    # Our own image is tagged with the Ray version it was built from.
    assert image.rsplit(":", 1)[-1] == ray, image
    for path in sorted(INFRA.rglob("*")):
        if path.is_file():
            for found in _ray_versions_in_images(path.read_text()):
                assert found == ray, f"{path}: rayproject/ray:{found} != ray=={ray}"

    for spec in _cluster_specs():
        assert str(spec["rayVersion"]) == ray
        pods = [spec["headGroupSpec"]] + spec["workerGroupSpecs"]
        for group in pods:
            for container in group["template"]["spec"]["containers"]:
                assert container["image"].rsplit(":", 1)[-1] == ray, container["image"]


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
        found = re.findall(r"mlflow==([^\s\"']+)", text)
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
    ignored = {line.strip().rstrip("/") for line in
               (INFRA / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    wanted = {".venv", "ray_results", "mlruns", "mlflow.db", "data", "models", "index", ".dvc/cache"}
    assert wanted <= ignored, wanted - ignored
