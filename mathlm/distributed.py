"""torchrun, DDP and FSDP2: the few distributed pieces every recipe and the Trainer share.

Launch (one node, K processes; the same script runs as one process without torchrun):

    torchrun --standalone --nproc_per_node=K recipes/sft.py --distributed ddp
    torchrun --standalone --nproc_per_node=K recipes/sft.py --distributed fsdp --checkpoint_format sharded

- `init_distributed()` reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK, picks nccl on GPUs and
  gloo on CPUs, and binds each process to its GPU. Without torchrun it is a no-op (world size 1).
- `wrap_model(model, "ddp" | "fsdp")`: DDP wraps the module (gradients all-reduced, averaged over
  ranks). FSDP2 shards in place: `fully_shard` on every transformer block, then on the root; on
  GPU with a bf16 MixedPrecisionPolicy (bf16 compute and all-gathers, fp32 gradient reduction,
  fp32 master weights). Both average gradients over ranks, which is what the Trainer's token
  normalisation assumes.
- State dicts go through `torch.distributed.checkpoint.state_dict`, which names every tensor by
  its plain FQN (`layers.0.self_attn.q_proj.weight`) whether the model is plain, DDP or FSDP2.
  Two checkpoint formats: "full" gathers the weights and optimizer to rank 0 (the model folder is
  then directly a Hugging Face folder); "sharded" has every rank write its own shards with
  torch.distributed.checkpoint (DCP: no gather, no rank-0 memory peak) and `dcp_to_hf` converts
  such a folder to one Hugging Face folder offline (`python -m mathlm.distributed to-hf CKPT OUT`).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn

STRATEGIES = ("ddp", "fsdp")
DCP_DIR = "dcp"  # the sharded weights and optimizer inside a checkpoint folder


@dataclass
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the torchrun process group (nccl on GPU, gloo on CPU); a single process without torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return DistInfo(get_rank(), local_rank, get_world_size(), device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place sum or mean over ranks (identity on one process); returns the tensor."""
    if op not in ("sum", "mean"):
        raise ValueError(f"op ({op!r}) must be 'sum' or 'mean'")
    if get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        if op == "mean":
            tensor /= get_world_size()
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank (picklable objects: small metadata, error messages)."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# ------------------------------------------------------------------------------------------ wrapping


def is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def shard_model(model: nn.Module, mixed_precision: bool | None = None) -> nn.Module:
    """FSDP2 in place: `fully_shard` each transformer block (every mathlm Block inside `model`), then the root.

    mixed_precision (default: on GPU): bf16 parameters for compute and all-gathers, fp32 gradient
    reduce-scatter; the sharded parameters themselves stay in the model's dtype (fp32 masters).
    A model on the meta device may be sharded first and materialized afterwards (each rank then
    allocates only its shards). A materialized model is broadcast from rank 0 first, so ranks
    that initialised differently still start from the same weights (DDP does the same).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from .model import Block

    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    if mixed_precision is None:
        mixed_precision = device_type == "cuda"
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_precision \
        else MixedPrecisionPolicy()
    mesh = init_device_mesh(device_type, (get_world_size(),))
    if get_world_size() > 1:
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                if t.device.type != "meta":
                    dist.broadcast(t, src=0)
    for block in [m for m in model.modules() if isinstance(m, Block)]:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def wrap_model(model: nn.Module, strategy: str = "ddp", mixed_precision: bool | None = None) -> nn.Module:
    """The module the training step calls: the model itself on one process or under FSDP2 (sharded
    in place), a DistributedDataParallel wrapper under DDP. Keep `model` for state dicts."""
    if strategy not in STRATEGIES:
        raise ValueError(f"distributed strategy ({strategy!r}) must be one of {STRATEGIES}")
    if is_fsdp(model):
        return model  # already sharded by the caller (e.g. meta-device build, then shard, then load)
    if get_world_size() == 1:
        return model
    if strategy == "fsdp":
        return shard_model(model, mixed_precision)
    from torch.nn.parallel import DistributedDataParallel
    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


@contextlib.contextmanager
def gradient_sync(module: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce / reduce-scatter of accumulation micro-batches but the last."""
    from torch.nn.parallel import DistributedDataParallel
    if enabled:
        if is_fsdp(module):
            module.set_requires_gradient_sync(True)
        yield
    elif isinstance(module, DistributedDataParallel):
        with module.no_sync():
            yield
    elif is_fsdp(module):
        module.set_requires_gradient_sync(False)
        yield
    else:
        yield


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """Clip to `max_norm` (0 = measure only) and return the global L2 norm over all ranks' shards."""
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm if max_norm > 0 else float("inf"))
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # a DTensor under FSDP2


def fsdp_memory_plan(model: nn.Module, n_gpus: int, rows: int, seq_len: int, activation_checkpointing: bool = True,
                     param_bytes: int = 4, compute_bytes: int = 2) -> dict[str, float]:
    """Estimated GiB per GPU of FSDP2 training (full sharding, bf16 compute, fp32 masters, AdamW).

    model may live on the meta device. rows: sequences per GPU per forward (a DPO pair is 2 rows).
    Sharded over n_gpus: fp32 weights, fp32 gradients and AdamW's two moments (16 bytes/param).
    Unsharded while in use: the root's own parameters (embedding, final norm, output head) and two
    transformer blocks in bf16 (the one running and the one prefetched). Activations: with
    checkpointing, each block's input plus one block's recomputed intermediates; without, every
    block's intermediates. Logits: bf16 logits and their gradient over the vocabulary (the loss
    works on them in fp32 chunks). Framework overhead (CUDA context, allocator fragmentation) is a
    separate `overhead` line of 3 GiB.
    """
    from .model import Block

    cfg = model.config
    gib = 1024 ** 3
    n_params = sum(p.numel() for p in model.parameters())
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    block_params = sum(p.numel() for p in blocks[0].parameters()) if blocks else 0
    root_params = n_params - block_params * len(blocks)
    tokens = rows * seq_len
    per_block_act = tokens * (6 * cfg.dim + 4 * cfg.hidden_dim) * compute_bytes  # q,k,v,o,attn,norms + gate,up,act,down
    plan = {
        "weights (fp32, sharded)": n_params * param_bytes / n_gpus / gib,
        "gradients (fp32, sharded)": n_params * param_bytes / n_gpus / gib,
        "AdamW moments (fp32, sharded)": 2 * n_params * 4 / n_gpus / gib,
        "gathered root params (bf16)": root_params * compute_bytes / gib,
        "gathered blocks (bf16, 2 in flight)": 2 * block_params * compute_bytes / gib,
        "activations": ((len(blocks) * tokens * cfg.dim * compute_bytes + per_block_act) if activation_checkpointing
                        else len(blocks) * per_block_act) / gib,
        "logits + grad (bf16)": 2 * tokens * cfg.vocab_size * compute_bytes / gib,
        "overhead": 3.0,
    }
    plan["total"] = sum(plan.values())
    return plan


# ------------------------------------------------------------------------------------------ state dicts


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(**kw)


def full_model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every weight, unsharded, on CPU, on rank 0 (other ranks get {}). Collective under FSDP2."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    return get_model_state_dict(model, options=_options(full_state_dict=True, cpu_offload=True))


class _GatheredModel:
    """What save_hf_checkpoint reads from a model (config, state_dict), for gathered weights."""

    def __init__(self, config, state: dict[str, torch.Tensor]):
        self.config, self._state = config, state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state


def save_hf_folder(model: nn.Module, path: str | os.PathLike, tokenizer=None, dtype: torch.dtype | None = None,
                   head_meta: dict | None = None) -> Path:
    """Write `model` (plain, DDP's module or FSDP2-sharded) as one Hugging Face folder at `path`;
    a ScalarHeadModel (reward, critique) gets its folder layout (backbone + score head + `head_meta`).

    Collective: every rank calls it; the weights are gathered to rank 0's CPU, which writes the
    folder (atomically, via save_hf_checkpoint). Calling save_hf_checkpoint on rank 0 alone would
    hang under FSDP2: gathering a sharded tensor needs every rank.
    """
    from .checkpoint import save_hf_checkpoint

    weights = full_model_state_dict(model)
    if get_rank() == 0:
        if hasattr(model, "head") and hasattr(model, "backbone"):  # a ScalarHeadModel: its own folder layout
            from .scalar_head import write_scalar_head_folder
            backbone = {k.removeprefix("backbone."): v for k, v in weights.items() if k.startswith("backbone.")}
            head = {k.removeprefix("head."): v for k, v in weights.items() if k.startswith("head.")}
            write_scalar_head_folder(path, _GatheredModel(model.config, backbone), head, tokenizer, dtype,
                                     **(head_meta or {}))
        else:
            save_hf_checkpoint(_GatheredModel(model.config, weights), path, tokenizer=tokenizer, dtype=dtype)
    del weights
    barrier()
    return Path(path)


def full_optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer state keyed by parameter FQN, unsharded, on CPU, on rank 0. Collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
    return get_optimizer_state_dict(model, optimizer, options=_options(full_state_dict=True, cpu_offload=True))


def load_full_state_dicts(model: nn.Module, model_state: dict, optimizer: torch.optim.Optimizer | None = None,
                          optimizer_state: dict | None = None) -> None:
    """Load full (unsharded, FQN-keyed) state dicts held by every rank; FSDP2 keeps its shards."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict
    set_model_state_dict(model, model_state, options=_options(full_state_dict=True))
    if optimizer is not None and optimizer_state is not None:
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=_options(full_state_dict=True))


def save_sharded(model: nn.Module, optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> None:
    """Every rank writes its own shards of the weights and optimizer state to `path` (DCP)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(path))


def load_sharded(model: nn.Module, optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> None:
    """Read a DCP folder written by `save_sharded`, on any number of ranks (DCP reshards)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def dcp_to_hf(checkpoint: str | os.PathLike, out: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Convert a sharded training checkpoint (config.json + dcp/) to one Hugging Face folder.

    Runs in one process without a process group; needs the model's size in CPU memory once.
    dtype: None keeps the training dtype of the shards (usually fp32 master weights).
    """
    import torch.distributed.checkpoint as dcp

    from .checkpoint import read_hf_config, save_hf_checkpoint
    from .config import ModelConfig
    from .model import Transformer
    from .tokenizer import Tokenizer, has_tokenizer

    checkpoint = Path(checkpoint)
    shards = checkpoint / DCP_DIR
    if not (shards / ".metadata").is_file():
        raise FileNotFoundError(f"{shards} holds no DCP checkpoint (.metadata missing): is {checkpoint} a "
                                f"sharded checkpoint? A full checkpoint is already a Hugging Face folder.")
    meta = dcp.FileSystemReader(str(shards)).read_metadata()
    stored = meta.state_dict_metadata.get("model.embed_tokens.weight")
    cfg = ModelConfig.from_hf_config(read_hf_config(checkpoint))
    with torch.device("cpu"):
        model = Transformer(cfg).to(stored.properties.dtype if stored is not None else torch.float32)
    state = {"model": model.state_dict()}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(shards), no_dist=True)
    model.load_state_dict(state["model"])
    tokenizer = Tokenizer.from_pretrained(checkpoint) if has_tokenizer(checkpoint) else None
    return save_hf_checkpoint(model, out, tokenizer=tokenizer, dtype=dtype)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m mathlm.distributed",
                                description="Convert a sharded (DCP) training checkpoint to one Hugging Face folder.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("to-hf", help="CHECKPOINT (a step_* folder with dcp/) -> OUT (config.json + model.safetensors)")
    c.add_argument("checkpoint")
    c.add_argument("out")
    c.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None)
    args = p.parse_args(argv)
    out = dcp_to_hf(args.checkpoint, args.out, getattr(torch, args.dtype) if args.dtype else None)
    print(json.dumps({"hf_checkpoint": str(out)}))


if __name__ == "__main__":
    main()
