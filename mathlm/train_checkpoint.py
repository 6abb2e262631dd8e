"""Training checkpoints: atomic, verifiable, resumable, the last K kept.

On disk (one folder per saved step under `<out_dir>/checkpoints/`):

    step_00000200/
        config.json, model.safetensors     "full" format: a Hugging Face folder (load_hf_checkpoint,
        [tokenizer.model]                  transformers' from_pretrained), weights gathered to rank 0
        optimizer.pt                       AdamW state keyed by parameter name (any world size loads it)
      or
        config.json, dcp/                  "sharded" format: every rank's shards of the weights and
                                           optimizer (torch.distributed.checkpoint); convert with
                                           `python -m mathlm.distributed to-hf step_00000200 OUT`
        trainer_state.pt                   step, data position, NaN counters, the train config, extras
        rng_rank00000.pt ...               python / numpy / torch CPU / CUDA generator states, per rank
        manifest.json                      written last: every file's size and sha256

A save writes `.step_00000200.tmp/` and renames it when complete, so a folder named `step_*`
exists only once everything in it (manifest included) is on disk; a crash mid-save leaves the
previous checkpoints untouched. Loading checks the manifest first: a missing, truncated or
altered file raises `CheckpointError` naming it and the previous checkpoint to fall back to.
Every file is read with `torch.load(weights_only=True)`: a checkpoint cannot run code.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from . import distributed as D
from .checkpoint import CONFIG_NAME, load_hf_checkpoint, replace_dir

STATE_FILE = "trainer_state.pt"
OPTIMIZER_FILE = "optimizer.pt"
MANIFEST_FILE = "manifest.json"
FORMATS = ("full", "sharded")
_STEP_DIR = re.compile(r"step_(\d+)")


class CheckpointError(RuntimeError):
    """A checkpoint folder is incomplete, truncated or corrupt."""


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def rng_file(rank: int) -> str:
    return f"rng_rank{rank:05d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete-looking checkpoint folders in `directory`, oldest step first (temp folders excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := _STEP_DIR.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def previous_checkpoint(path: str | os.PathLike) -> Path | None:
    """The newest checkpoint beside `path` with a smaller step."""
    path = Path(path)
    older = [p for p in list_checkpoints(path.parent) if p.name < path.name]
    return older[-1] if older else None


# ------------------------------------------------------------------------------------------ RNG


def capture_rng_state() -> dict:
    import numpy as np

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (kind, keys.tolist(), pos, has_gauss, gauss),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    import numpy as np

    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------ manifest


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def _write_manifest(folder: Path, step: int, fmt: str, checksums: bool) -> None:
    files = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = file.relative_to(folder).as_posix()
        files[rel] = {"bytes": file.stat().st_size, **({"sha256": _sha256(file)} if checksums else {})}
    manifest = {"step": step, "format": fmt, "world_size": D.get_world_size(), "files": files}
    with open(folder / MANIFEST_FILE, "w") as f:
        json.dump(manifest, f, indent=1)


def verify_checkpoint(path: str | os.PathLike, checksums: bool = True) -> dict:
    """The manifest of `path` after checking every file it lists (size, and sha256 if recorded)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a checkpoint folder")
    manifest_file = path / MANIFEST_FILE
    if not manifest_file.is_file():
        raise CheckpointError(f"{manifest_file} is missing: the save of {path.name} did not finish")
    try:
        with open(manifest_file) as f:
            manifest = json.load(f)
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{manifest_file} is unreadable: {e}") from None
    for rel, want in files.items():
        file = path / rel
        if not file.is_file():
            raise CheckpointError(f"{file} is missing (listed in {MANIFEST_FILE})")
        size = file.stat().st_size
        if size != want["bytes"]:
            raise CheckpointError(f"{file} is truncated or altered: {size} bytes, {want['bytes']} when saved")
        if checksums and "sha256" in want and _sha256(file) != want["sha256"]:
            raise CheckpointError(f"{file} is corrupt: its sha256 differs from the one recorded when saved")
    return manifest


# ------------------------------------------------------------------------------------------ save


def save_checkpoint(directory: str | os.PathLike, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    trainer_state: dict, *, fmt: str = "full", keep_last: int = 2, checksums: bool = True,
                    tokenizer=None) -> Path:
    """Write `directory/step_<step>` atomically. Collective: every rank calls it.

    model: the unwrapped model (plain or FSDP2-sharded in place), not a DDP wrapper.
    keep_last: afterwards delete all but the newest `keep_last` checkpoints (0 keeps all).
    """
    if fmt not in FORMATS:
        raise ValueError(f"checkpoint format ({fmt!r}) must be one of {FORMATS}")
    directory = Path(directory)
    final = directory / step_dir_name(step)
    tmp = directory / f".{final.name}.tmp"  # one name all ranks agree on
    rank = D.get_rank()
    if rank == 0:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # leftover of a crashed save
    D.barrier()
    try:
        if fmt == "sharded":
            if rank == 0:
                tmp.mkdir()
                with open(tmp / CONFIG_NAME, "w") as f:
                    json.dump(model.config.to_hf_config(), f, indent=2)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
            D.barrier()
            D.save_sharded(model, optimizer, tmp / D.DCP_DIR)
        else:
            D.save_hf_folder(model, tmp, tokenizer=tokenizer)  # collectives: every rank, same order
            optim_state = D.full_optimizer_state_dict(model, optimizer)
            if rank == 0:
                torch.save(optim_state, tmp / OPTIMIZER_FILE)
            del optim_state
        D.barrier()
        torch.save(capture_rng_state(), tmp / rng_file(rank))
        if rank == 0:
            torch.save(trainer_state, tmp / STATE_FILE)
        D.barrier()
        if rank == 0:
            _write_manifest(tmp, step, fmt, checksums)
            replace_dir(tmp, final)
            if keep_last > 0:
                for old in list_checkpoints(directory)[:-keep_last]:
                    shutil.rmtree(old, ignore_errors=True)
        D.barrier()
    except BaseException:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# ------------------------------------------------------------------------------------------ load


def _fallback_hint(path: Path) -> str:
    prev = previous_checkpoint(path)
    if prev is None:
        return " (no older checkpoint beside it)"
    return f"; the previous checkpoint {prev} is untouched: resume from it with Trainer.resume({str(prev)!r})"


def _torch_load(file: Path):
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # zip / pickle errors of a damaged file
        raise CheckpointError(f"{file} could not be read: {e}") from e


def load_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer,
                    checksums: bool = True) -> dict:
    """Verify `path`, load weights, optimizer and this rank's RNG state; return the trainer state.

    Collective: every rank calls it. Rank 0 verifies the manifest and all ranks raise the same
    CheckpointError if anything is wrong, before any tensor is touched.
    """
    path = Path(path)
    error = None
    if D.get_rank() == 0:
        try:
            verify_checkpoint(path, checksums)
        except CheckpointError as e:
            error = str(e)
    error = D.broadcast_object(error)
    if error is not None:
        raise CheckpointError(error + _fallback_hint(path))
    with open(path / MANIFEST_FILE) as f:
        manifest = json.load(f)
    try:
        if manifest["format"] == "sharded":
            D.load_sharded(model, optimizer, path / D.DCP_DIR)
        else:
            try:
                weights = load_hf_checkpoint(path).state_dict()
            except (ValueError, FileNotFoundError) as e:
                raise CheckpointError(str(e)) from e
            D.load_full_state_dicts(model, weights, optimizer, _torch_load(path / OPTIMIZER_FILE))
            del weights
        state = _torch_load(path / STATE_FILE)
    except CheckpointError as e:
        raise CheckpointError(str(e) + _fallback_hint(path)) from e
    rng = path / rng_file(D.get_rank())
    if rng.is_file() and manifest.get("world_size") == D.get_world_size():
        restore_rng_state(_torch_load(rng))
    else:
        warnings.warn(f"{path} was saved by {manifest.get('world_size')} ranks, this run has "
                      f"{D.get_world_size()}: random generators are reseeded, not restored", stacklevel=2)
    return state
