"""tools/dist_train.sh on two "nodes" (NNODES=2, NODE_RANK=0/1, MASTER_ADDR=127.0.0.1, one process each)
trains, saves and resumes exactly like one node with two processes."""

import subprocess

import pytest
import torch
from dist_runs import ROOT, env, free_port, tiny

pytestmark = pytest.mark.integration


def _launch(run_dir, overrides, nodes: int) -> str:
    """``bash tools/dist_train.sh demo N ...`` on ``nodes`` nodes of this machine (2 processes in all)."""
    port = str(free_port())
    overrides = [o for o in overrides if not o.startswith(("experiment=", "output_dir="))]  # set by the script
    procs = []
    for node in range(nodes):
        node_env = dict(
            env(),
            RUN_DIR=str(run_dir),
            NNODES=str(nodes),
            NODE_RANK=str(node),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
        )
        procs.append(
            subprocess.Popen(
                ["bash", str(ROOT / "tools" / "dist_train.sh"), "demo", str(2 // nodes), *overrides],
                cwd=ROOT,
                env=node_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=600)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for node, (proc, log) in enumerate(zip(procs, logs)):
        assert proc.returncode == 0, f"node {node}:\n{log[-5000:]}"
    return logs[0]


def test_two_nodes_train_save_and_resume_like_one(tmp_path):
    data = tmp_path / "data"
    common = tiny(data, tmp_path, "deepspeed=zero2", "epochs=1", "train.save_every_steps=2", "test.enabled=false")
    _launch(tmp_path / "one_node", common, nodes=1)
    two = tmp_path / "two_nodes"
    first = _launch(two, [*common, "train.max_steps=3"], nodes=2)  # stops mid-epoch, after the step-2 checkpoint
    assert "= 2 process(es) x" in first
    assert (two / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    assert sorted(p.name for p in (two / "checkpoints" / "step_00000002").glob("rng_rank*.pt")) == [
        "rng_rank0.pt",
        "rng_rank1.pt",
    ]
    second = _launch(two, common, nodes=2)
    assert "resumed from" in second
    a = torch.load(tmp_path / "one_node" / "adapter.pth", weights_only=True)["state_dict"]
    b = torch.load(two / "adapter.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
