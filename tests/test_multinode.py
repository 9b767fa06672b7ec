"""The multi-node path on one machine: a Ray head and a second Ray node,
each a `ray start --block` in its own process group, and the pretrain stage
run against them as a user runs it on a cluster (RAY_ADDRESS, shared
DUL_RAY_STORAGE), with two workers that cannot share a node.

The cluster is this test's own: free ports, its own temp dirs, its own auth
token, so it cannot meet another Ray on the machine, and the session's
`ray.init(address="local")` never sees it. Ray rewrites a node address of
127.0.0.1 to the host's own address (``services.resolve_ip_for_localhost``),
so both raylets advertise that address; the traffic stays on this host.
What this does and does not prove is in infra/README.md ("What the loopback
test proves").
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import write_params

BIN = Path(sys.executable).parent
CPUS_PER_NODE = 2
START_TIMEOUT_S = 90

# Exec argv[2:] so that it gets SIGTERM when this test process dies, even by SIGKILL:
# a killed pytest does not leave the cluster behind (`ray start` then stops its node,
# Ray's reaper the rest of its group). PR_SET_PDEATHSIG survives exec, not a fork.
DIE_WITH_PARENT = """
import ctypes, os, signal, sys
if sys.platform == "linux":
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):  # the parent died before the line above
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""

# Run in a fresh interpreter (this one may hold the session's local Ray and its token):
# every Ray Train worker actor the cluster ever had, dead ones included, with its node.
WORKERS_QUERY = """
import json, os
from ray.util.state import list_actors, list_nodes
address = os.environ["RAY_ADDRESS"]
actors = list_actors(address=address, filters=[("class_name", "=", "RayTrainWorker")], detail=True,
                     limit=1000, raise_on_missing_output=False)
nodes = list_nodes(address=address, detail=True, raise_on_missing_output=False)
print(json.dumps({"workers": [{"node_id": a.node_id, "state": a.state, "pid": a.pid} for a in actors],
                  "nodes": [{"node_id": n.node_id, "resources": n.resources_total, "state": n.state}
                            for n in nodes]}))
"""


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports the kernel calls free now (held together, so never the same one twice)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# A node that cannot see the driver's files: its own mount namespace with an empty tmpfs over
# the driver's working folder, as a second machine would be (the shared storage stays visible).
HIDE = 'mount -t tmpfs dul-hidden "$0" && exec "$@"'


class Node:
    """One `ray start --block` process, leader of its own process group; with ``hide``,
    in a mount namespace where that folder is an empty tmpfs."""

    def __init__(self, args: list[str], env: dict, log: Path, hide: Path | None = None):
        self.log = log
        command = [sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), str(BIN / "ray"), "start", "--block", *args]
        if hide is not None:
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDE, str(hide), *command]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def wait_started(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if "Ray runtime started" in text:
                return
            if _exited_unreaped(self.process.pid):  # not reaped: stop() still owns its group id
                break
            time.sleep(0.25)
        raise AssertionError(f"`ray start` did not come up:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the `ray start` process (it stops its raylet and agents), then
        SIGKILL its whole process group: nothing it started survives. The group
        is killed before the leader is reaped, so its id cannot have been reused."""
        pid = self.process.pid
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and not _exited_unreaped(pid):
                time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def _exited_unreaped(pid: int) -> bool:
    """Whether the child has exited, leaving it a zombie (its pid, and so its group id, stay taken)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _group_gone(pgid: int, timeout_s: float = 15.0) -> bool:
    """Whether no process of the group is left (zombies of killed children included:
    reparented to init, they are reaped there, not here)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def two_node_cluster(folder: Path, hide: Path | None = None) -> Iterator[dict]:
    """A head and a second node, ``CPUS_PER_NODE`` CPUs each (the second one blind to
    ``hide``); yields the env a client needs, and the nodes (``"nodes"``) to stop or add to."""
    gcs, dashboard, client, agent_head = free_ports(4)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DUL_", "MLFLOW_"))}
    env.update(
        RAY_AUTH_MODE="token",  # the cluster's own token: every node and client must carry it
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # a SIGTERMed node stops at once
        RAY_USAGE_STATS_ENABLED="0",
        # Train's controller runs on the cluster and reads this there (see runtime.configure_local_ray)
        RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.2",
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
    )
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", str(CPUS_PER_NODE), "--num-gpus", "0",
              "--object-store-memory", str(200 << 20), "--min-worker-port", "0", "--max-worker-port", "0",
              "--include-log-monitor", "false", "--disable-usage-stats"]
    nodes: list[Node] = []
    try:
        head = Node(["--head", "--port", str(gcs), "--dashboard-port", str(dashboard),
                     "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent_head),
                     "--temp-dir", str(folder / "head"), "--resources", json.dumps({"dul_head": 1}), *common],
                    env, folder / "head.log")
        nodes.append(head)
        deadline = time.monotonic() + START_TIMEOUT_S
        head.wait_started(deadline)
        def add_node(label: str) -> Node:
            port = free_ports(1)[0]
            node = Node(["--address", f"127.0.0.1:{gcs}", "--dashboard-agent-listen-port", str(port),
                         "--temp-dir", str(folder / label), "--resources", json.dumps({f"dul_{label}": 1}),
                         *common], env, folder / f"{label}.log", hide=hide)
            nodes.append(node)
            node.wait_started(time.monotonic() + START_TIMEOUT_S)
            return node

        add_node("node")
        yield {**env, "RAY_ADDRESS": f"127.0.0.1:{gcs}", "add_node": add_node, "nodes": nodes}
    finally:
        for node in reversed(nodes):
            node.stop()
        survivors = [n.process.pid for n in nodes if not _group_gone(n.process.pid)]
        assert not survivors, f"processes of the Ray node groups {survivors} survived the teardown"


def _default_address_file() -> Path:
    from ray._common.utils import get_ray_address_file

    return Path(get_ray_address_file(None))


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def stage(name: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", f"pipelines.{name}"], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def multinode_run(tmp_path_factory, request):
    """Ingest (while the nodes start), then pretrain on the two-node cluster; the cluster is gone on return."""
    root = tmp_path_factory.mktemp("multinode")
    work, storage = root / "work", root / "shared_storage"
    work.mkdir(), storage.mkdir()
    # Ray's own temp dirs: short, for its AF_UNIX socket paths (107 bytes at most)
    ray_tmp = Path(tempfile.mkdtemp(prefix="dul-mn-"))
    request.addfinalizer(lambda: shutil.rmtree(ray_tmp, ignore_errors=True))
    write_params(work, {"pretrain": {"num_workers": 2, "cpus_per_worker": 2}})
    address_file = _default_address_file()
    before = _read(address_file)
    seconds, clock = {}, time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        seconds[name], clock = time.monotonic() - clock, time.monotonic()

    # MLflow: a local store in the working folder (no MLFLOW_TRACKING_URI); one run group.
    # Ingest does not use Ray: it runs while the cluster starts.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DUL_", "MLFLOW_"))},
           "DUL_RUN_GROUP": "multinode"}
    ingest = subprocess.Popen([sys.executable, "-m", "pipelines.ingest"], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    request.addfinalizer(ingest.kill)  # a no-op once it has finished
    with two_node_cluster(ray_tmp, hide=work) as cluster:
        cluster_env = {k: v for k, v in cluster.items() if isinstance(v, str)}
        lap("cluster start")
        during = _read(address_file)
        output, _ = ingest.communicate(timeout=300)
        assert ingest.returncode == 0, f"ingest failed:\n{output[-4000:]}"
        lap("rest of ingest")
        # the cluster's address and token; Ray Train checkpoints in the shared folder
        env = {**cluster_env, "DUL_RAY_STORAGE": str(storage), "DUL_RUN_GROUP": "multinode"}
        pretrain = stage("pretrain", work, env)
        lap("pretrain")
        query = subprocess.run([sys.executable, "-c", WORKERS_QUERY], env=env, capture_output=True,
                               text=True, timeout=120, check=False)
        assert query.returncode == 0, query.stderr[-4000:]
        lap("state query")
    lap("teardown")
    print("multinode:", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    return {"work": work, "storage": storage, "pretrain": pretrain, "state": json.loads(query.stdout.splitlines()[-1]),
            "ray_tmp": ray_tmp, "before": before, "during": during, "after": _read(address_file),
            "gcs_port": cluster_env["RAY_ADDRESS"].rsplit(":", 1)[1]}


@pytest.mark.ray
def test_pretrain_on_two_nodes_writes_the_stack(multinode_run):
    stack = torch.load(multinode_run["work"] / "models/stack.pt", weights_only=True)
    assert stack["config"]["sizes"] == [64, 24, 6]
    assert [tuple(layer["W"].shape) for layer in stack["layers"]] == [(64, 24), (24, 6)]
    metrics = json.loads((multinode_run["work"] / "reports/pretrain/metrics.json").read_text())
    assert set(metrics) == {"layer1_recon_error", "layer2_recon_error"}
    assert "pretrain: 64-24-6 stack" in multinode_run["pretrain"].stdout
    assert (multinode_run["work"] / "mlflow.db").stat().st_size > 0  # the local store, in the working folder


@pytest.mark.ray
def test_the_two_workers_ran_on_two_nodes(multinode_run):
    state = multinode_run["state"]
    nodes = {n["node_id"]: n for n in state["nodes"] if n["state"] == "ALIVE"}
    assert len(nodes) == 2
    assert {r for n in nodes.values() for r in n["resources"] if r.startswith("dul_")} == {"dul_head", "dul_node"}
    workers = state["workers"]
    assert len(workers) == 2, workers  # one worker group, no restarts (max_failures: 0)
    assert {w["node_id"] for w in workers} == set(nodes), workers


@pytest.mark.ray
def test_checkpoints_are_in_the_shared_storage(multinode_run):
    runs = [p for p in multinode_run["storage"].iterdir() if p.name.startswith("pretrain-")]
    assert len(runs) == 1, list(multinode_run["storage"].iterdir())
    checkpoints = sorted(p for p in runs[0].glob("checkpoint_*") if p.is_dir())
    assert len(checkpoints) == 2  # CheckpointConfig(num_to_keep=2) of 2 layers x 2 epochs
    state = torch.load(checkpoints[-1] / "state.pt", weights_only=True)
    assert len(state["done"]) == 2 and len(state["history"]) == 4
    assert not (multinode_run["work"] / "ray_results").exists()


@pytest.mark.ray
def test_the_workers_read_their_inputs_from_the_shared_storage(multinode_run):
    """The second node cannot see the driver's folder (an empty tmpfs over it): its worker
    trained from the copy of data/prepared in the run's storage, fetched to the node."""
    (run,) = [p for p in multinode_run["storage"].iterdir() if p.name.startswith("pretrain-")]
    shared = run / "inputs" / "data_dir"
    assert (shared / ".complete").exists()
    for name in ("train.parquet", "card.json"):
        assert (shared / "prepared" / name).read_bytes() == (multinode_run["work"] / "data/prepared" / name).read_bytes()


@pytest.mark.ray
def test_the_cluster_left_the_default_ray_address_alone(multinode_run):
    """`ray start` wrote its address under its own --temp-dir, so a bare `ray.init()` elsewhere
    on this machine still starts (or finds) what it did before."""
    assert multinode_run["during"] == multinode_run["before"]
    assert multinode_run["after"] == multinode_run["before"]
    written = (multinode_run["ray_tmp"] / "head" / "ray_current_cluster").read_text().strip()
    assert written.rsplit(":", 1)[1] == multinode_run["gcs_port"]


def stored_epochs(storage: Path) -> int:
    best = 0
    for state in storage.glob("pretrain-*/checkpoint_*/state.pt"):
        with contextlib.suppress(Exception):  # being written
            best = max(best, len(torch.load(state, weights_only=True)["history"]))
    return best


@pytest.mark.slow
@pytest.mark.ray
def test_a_lost_node_mid_layer_ends_bitwise_equal(tmp_path_factory, request):
    """Two workers on two nodes; the second node is killed mid-layer and a third joins:
    Ray Train restarts the group, the workers resume from the newest checkpoint in the
    shared storage and the stack ends byte-identical to an undisturbed run's."""
    from components.data import ingest

    root = tmp_path_factory.mktemp("lostnode")
    work, storage, reference_storage = root / "work", root / "storage", root / "reference"
    for folder in (work, storage, reference_storage):
        folder.mkdir()
    ray_tmp = Path(tempfile.mkdtemp(prefix="dul-ln-"))
    request.addfinalizer(lambda: shutil.rmtree(ray_tmp, ignore_errors=True))
    write_params(work, {"pretrain": {"hidden": [32], "epochs": 40, "num_workers": 2, "cpus_per_worker": 2,
                                     "max_failures": 3}})
    ingest("digits", work / "data/prepared")
    with two_node_cluster(ray_tmp, hide=work) as cluster:
        env = {k: v for k, v in cluster.items() if isinstance(v, str)} | {"DUL_RUN_GROUP": "lost-node"}
        stage("pretrain", work, {**env, "DUL_RAY_STORAGE": str(reference_storage)})
        reference = (work / "models/stack.pt").read_bytes()
        (work / "models/stack.pt").unlink()
        run = subprocess.Popen([sys.executable, "-m", "pipelines.pretrain"], cwd=work, text=True,
                               env={**env, "DUL_RAY_STORAGE": str(storage)}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while stored_epochs(storage) < 8 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        lost_at = stored_epochs(storage)
        cluster["nodes"][1].stop(grace_s=0)  # the second node, its worker with it
        cluster["add_node"]("spare")
        output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output[-4000:]
    assert 8 <= lost_at < 40, f"the node was not lost mid-layer (at {lost_at} epochs)"
    assert (work / "models/stack.pt").read_bytes() == reference
