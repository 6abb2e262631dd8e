"""Run by tests/test_distributed.py as `torchrun --nproc_per_node=2 tests/distributed_worker.py OUT`
(gloo on CPU). Trains the tiny model of tests/test_train.py with DDP and with FSDP2, checkpoints
(full and sharded), resumes from a step-2 checkpoint, loads full weights into a meta-built FSDP2
model, and leaves everything under OUT for the test to compare with one process."""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_train import MODEL, batches, config, tiny_model  # noqa: E402

from mathlm import distributed as D  # noqa: E402
from mathlm.config import ModelConfig  # noqa: E402
from mathlm.model import Transformer  # noqa: E402
from mathlm.scalar_head import ScalarHeadModel  # noqa: E402
from mathlm.train import Trainer, causal_lm_loss  # noqa: E402
from mathlm.train_checkpoint import save_checkpoint  # noqa: E402

GLOBAL_BATCH = 4  # examples per micro-batch, all ranks together
RUN = dict(max_steps=3, grad_accum=2, save_every=2, warmup_steps=1)


def run_config(out_dir, strategy="ddp", checkpoint_format="full"):
    return config(out_dir, distributed=strategy, checkpoint_format=checkpoint_format, **RUN)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    info = D.init_distributed()
    assert info.world_size == 2 and info.device.type == "cpu", info
    for strategy, fmt in (("ddp", "full"), ("fsdp", "sharded")):
        trainer = Trainer(tiny_model(), run_config(out / strategy, strategy, fmt), causal_lm_loss, batches(GLOBAL_BATCH))
        trainer.train()
        if strategy == "fsdp":  # the other format: weights and optimizer gathered to rank 0
            save_checkpoint(out / "fsdp_full", trainer.global_step, trainer.model, trainer.optimizer,
                            trainer.state_dict(), fmt="full")
            D.save_hf_folder(trainer.model, out / "fsdp_final_hf")  # what a recipe's final export calls
        # A new model (other init) and data iterator resumed from step 2 must redo step 3 exactly.
        resumed = Trainer(tiny_model(seed=7), run_config(out / f"{strategy}_resumed", strategy, fmt), causal_lm_loss,
                          batches(GLOBAL_BATCH))
        resumed.resume(out / strategy / "checkpoints" / "step_00000002")
        resumed.train()
    # A full checkpoint is keyed by parameter name, whatever wrote it: DDP's step 2 resumes under FSDP2.
    cross = Trainer(tiny_model(seed=8), run_config(out / "fsdp_from_ddp", "fsdp"), causal_lm_loss, batches(GLOBAL_BATCH))
    cross.resume(out / "ddp" / "checkpoints" / "step_00000002")
    cross.train()
    # The big-model path: build on the meta device, shard, allocate only the shards, load full weights.
    with torch.device("meta"):
        meta_built = Transformer(ModelConfig(**MODEL))
    D.shard_model(meta_built)
    meta_built.to_empty(device="cpu")
    reference = tiny_model()
    D.load_full_state_dicts(meta_built, reference.state_dict())
    tokens = torch.randint(0, MODEL["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (meta_built(tokens) - reference(tokens)).abs().max().item()
    # A scalar-head model (reward, critique) sharded with FSDP2 exports in its own folder layout.
    torch.manual_seed(3)
    head_model = ScalarHeadModel(tiny_model(seed=3))
    D.shard_model(head_model)
    D.save_hf_folder(head_model, out / "fsdp_scalar_head", head_meta={"kind": "reward"})
    if info.is_main:
        (out / "meta_shard_load.json").write_text(json.dumps({"max_abs_diff": diff}))
    D.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
