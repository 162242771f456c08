"""torch.distributed on CPU (gloo), two ranks under torchrun: a NaN on one rank makes both skip the same step,
the weights stay identical, only rank 0 writes the run log; FSDP's sharded gradient norms are all-reduced."""
from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the distributed tests need torch")
if not torch.distributed.is_available():
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)

from trainguard.io.runlog import read_runlog  # noqa: E402

WORKER = Path(__file__).with_name("_ddp_worker.py")
NAN_STEP, STEPS = 3, 8  # as in the worker
REDUCED_SIGNALS = ("non_finite", "exploding_gradient", "vanishing_gradient", "loss_spike", "divergence", "plateau")


def reduced(findings: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [f for f in findings if f[0] in REDUCED_SIGNALS]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fsdp_available() -> bool:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return True


MODES = ["ddp"] + (["fsdp"] if fsdp_available() else [])


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> tuple[Path, dict[str, list[dict]]]:
    """Both modes in one torchrun launch (one process start for the two tests)."""
    out = tmp_path_factory.mktemp("distributed")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", str(WORKER), str(out), *MODES]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, {mode: [torch.load(out / mode / f"rank{rank}.pt") for rank in (0, 1)] for mode in MODES}


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_nan_on_one_rank_is_skipped_by_both(ranks, mode):
    if mode not in MODES:
        pytest.skip("this torch has no torch.distributed.fsdp.fully_shard")
    out, results = ranks
    rank0, rank1 = results[mode]

    skip = ("skip_step", NAN_STEP, "non_finite")
    assert skip in rank0["actions"] and rank0["actions"] == rank1["actions"]
    assert ("non_finite", NAN_STEP) in rank0["findings"]
    # the findings from reduced signals agree (data and activation findings are each rank's own batch's)
    assert reduced(rank0["findings"]) == reduced(rank1["findings"])
    for a, b in zip(rank0["weights"], rank1["weights"]):
        assert torch.equal(a, b)
        assert torch.isfinite(a).all()
    assert rank0["grad_norms"] == pytest.approx(rank1["grad_norms"], nan_ok=True)
    # the recorded norm is the global one (for FSDP: of the full gradient, not of this rank's shard)
    assert rank0["grad_norms"][0] == pytest.approx(rank0["first_norm"], rel=1e-5)

    assert rank0["writes_log"] and not rank1["writes_log"]
    log = read_runlog(out / mode / "run.jsonl")
    assert not log.problems and log.end["status"] == "ok"
    assert [s.step for s in log.steps] == list(range(STEPS))  # one writer: each step once
    assert not log.steps[NAN_STEP].applied and math.isnan(log.steps[NAN_STEP].loss)
