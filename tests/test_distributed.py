"""Two gloo processes under torchrun, with DDP and with FSDP2, against one process with the same
global batch: per-step losses and final weights within 1e-5; full (gathered) and sharded (DCP)
checkpoints convert to the same Hugging Face folder; resuming on two ranks repeats step 3."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distributed_worker import GLOBAL_BATCH, run_config
from mathlm.checkpoint import load_hf_checkpoint
from mathlm.distributed import dcp_to_hf
from mathlm.train import Trainer, causal_lm_loss
from test_train import batches, losses, tiny_model

WORKER = Path(__file__).with_name("distributed_worker.py")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_ranks")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_rank")
    model = tiny_model()
    Trainer(model, run_config(out), causal_lm_loss, batches(GLOBAL_BATCH, rank=0, world_size=1)).train()
    return out, model


def assert_weights_close(folder, model, atol=1e-5):
    loaded = load_hf_checkpoint(folder).state_dict()
    for name, p in model.state_dict().items():
        torch.testing.assert_close(loaded[name], p, atol=atol, rtol=0, msg=name)


@pytest.mark.distributed
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_give_the_losses_of_one(two_ranks, one_rank, strategy):
    single_dir, single_model = one_rank
    expected = losses(single_dir)
    assert list(expected) == [1, 2, 3]
    got = losses(two_ranks / strategy)
    assert got == pytest.approx(expected, abs=1e-5, rel=0)
    # step 3 of a run resumed on two ranks from the step-2 checkpoint (new model, new iterator)
    assert losses(two_ranks / f"{strategy}_resumed")[3] == pytest.approx(got[3], abs=1e-6, rel=0)
    if strategy == "fsdp":  # ... and from DDP's full checkpoint, under FSDP2
        assert losses(two_ranks / "fsdp_from_ddp")[3] == pytest.approx(got[3], abs=1e-5, rel=0)


@pytest.mark.distributed
def test_a_two_rank_checkpoint_resumes_on_one_process(two_ranks, one_rank, tmp_path):
    """The data position is global and the optimizer state keyed by name, so step 3 is the same;
    the per-rank RNG states cannot be matched to one rank and the trainer says so."""
    trainer = Trainer(tiny_model(seed=3), run_config(tmp_path), causal_lm_loss,
                      batches(GLOBAL_BATCH, rank=0, world_size=1))
    with pytest.warns(UserWarning, match=r"saved by 2 ranks, this run has 1: random generators are reseeded"):
        trainer.resume(two_ranks / "ddp" / "checkpoints" / "step_00000002")
    trainer.train()
    assert losses(tmp_path)[3] == pytest.approx(losses(one_rank[0])[3], abs=1e-5, rel=0)


@pytest.mark.distributed
def test_distributed_checkpoints_hold_the_single_process_weights(two_ranks, one_rank, tmp_path):
    _, single_model = one_rank
    assert_weights_close(two_ranks / "ddp" / "checkpoints" / "step_00000003", single_model)  # DDP, rank 0 saves
    assert_weights_close(two_ranks / "fsdp_full" / "step_00000003", single_model)  # FSDP2 gathered to rank 0
    assert_weights_close(two_ranks / "fsdp_final_hf", single_model)  # save_hf_folder under FSDP2
    sharded = two_ranks / "fsdp" / "checkpoints" / "step_00000003"
    assert sorted(p.name for p in (sharded / "dcp").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert not (sharded / "model.safetensors").exists()
    assert_weights_close(dcp_to_hf(sharded, tmp_path / "hf"), single_model)  # FSDP2 shards -> one HF folder


@pytest.mark.distributed
def test_meta_built_sharded_model_loads_full_weights(two_ranks):
    """Build on the meta device, fully_shard, allocate the shards, load an unsharded state dict:
    the forward equals the plain model's (how a 7B model starts without 2x memory)."""
    result = json.loads((two_ranks / "meta_shard_load.json").read_text())
    assert result["max_abs_diff"] < 1e-6


@pytest.mark.distributed
def test_sharded_scalar_head_model_exports_its_folder(two_ranks):
    """save_hf_folder gathers an FSDP2-sharded ScalarHeadModel into the layout ScalarHeadModel.load
    reads: the backbone equals a fresh build with the same seed, the head too."""
    from mathlm.scalar_head import ScalarHeadModel
    loaded = ScalarHeadModel.load(two_ranks / "fsdp_scalar_head")
    torch.manual_seed(3)
    reference = ScalarHeadModel(tiny_model(seed=3))
    for name, p in reference.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], p, atol=0, rtol=0, msg=name)
    assert json.loads((two_ranks / "fsdp_scalar_head" / "head_meta.json").read_text()) == {"kind": "reward"}
