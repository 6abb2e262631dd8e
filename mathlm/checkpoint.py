"""Model checkpoints in Hugging Face layout: `config.json` + `model.safetensors` (or shards with
`model.safetensors.index.json`), tensor names as in HF Llama / Mistral / Qwen2.

Loading builds the model on the meta device and assigns each tensor as it is read, so a 7B model
needs its own size in memory once, not twice. Saving writes a folder that transformers'
`AutoModelForCausalLM` and (with a tokenizer) `AutoTokenizer` load: config.json, the weights,
generation_config.json (the tokenizer's generation settings, every EOS id it stops on, BOS/pad
from the model's config) and the tokenizer's own files. The folder appears atomically (written
under a temporary name, then renamed).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import ModelConfig
from .model import Transformer

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
# Buffers some older HF checkpoints carry; they are recomputed, never loaded.
IGNORED_TENSORS = re.compile(r".*rotary_emb\.inv_freq$")

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def hf_name(name: str) -> str:
    """mathlm parameter name -> Hugging Face tensor name (HF nests the decoder under `model.`)."""
    return name if name.startswith("lm_head.") else f"model.{name}"


def mathlm_name(name: str) -> str:
    return name[len("model."):] if name.startswith("model.") else name


def parse_size(size: int | str) -> int:
    """'5GB' -> 5 * 10**9 bytes (HF convention: GB = 10**9, GiB = 2**30)."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)\s*", size, flags=re.IGNORECASE)
    if not m:
        raise ValueError(f"max_shard_size {size!r} must be an int or like '5GB', '500MB', '2GiB'")
    unit = m.group(2).upper()
    base = 1024 if "I" in unit else 1000
    return int(float(m.group(1)) * base ** "KMGT".index(unit[0]) * base)


def read_hf_config(path: str | os.PathLike) -> dict:
    path = Path(path)
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{cfg_file} not found: a checkpoint folder needs {CONFIG_NAME}")
    with open(cfg_file) as f:
        return json.load(f)


def _weight_files(path: Path) -> list[Path]:
    if (path / INDEX_NAME).is_file():
        with open(path / INDEX_NAME) as f:
            index = json.load(f)
        return [path / name for name in sorted(set(index["weight_map"].values()))]
    if (path / WEIGHTS_NAME).is_file():
        return [path / WEIGHTS_NAME]
    raise FileNotFoundError(f"{path} holds neither {WEIGHTS_NAME} nor {INDEX_NAME}")


def load_hf_checkpoint(path: str | os.PathLike, dtype: torch.dtype | None = None,
                       device: torch.device | str = "cpu", **config_overrides) -> Transformer:
    """Load a Hugging Face layout folder (model_type llama, mistral or qwen2) into a Transformer.

    dtype: None keeps the checkpoint's dtype (config.json `torch_dtype`, else the tensors' own).
    config_overrides: ModelConfig fields to change, e.g. attn_backend="flash".
    """
    path = Path(path)
    hf = read_hf_config(path)
    cfg = ModelConfig.from_hf_config(hf, **config_overrides)
    if dtype is None:
        dtype = checkpoint_dtype(hf)
    with torch.device("meta"):
        model = Transformer(cfg)
    state = load_hf_state_dict(path, model, dtype=dtype, device=device)
    model.load_state_dict(state, strict=not cfg.tie_embeddings, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    return model


def checkpoint_dtype(hf_config: dict) -> torch.dtype | None:
    return _DTYPES.get(hf_config.get("torch_dtype") or hf_config.get("dtype") or "", None)


def load_hf_state_dict(path: str | os.PathLike, model: Transformer, dtype: torch.dtype | None = None,
                       device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Read a folder's tensors as a mathlm state dict, checked against `model` (which may live on
    the meta device): every expected tensor present, none unexpected, every shape equal.
    Tensors are read one at a time and cast/moved as they are read (one copy in memory)."""
    path = Path(path)
    cfg = model.config
    expected = {hf_name(n): p for n, p in model.state_dict().items()}
    if cfg.tie_embeddings:
        expected.pop("lm_head.weight", None)

    state: dict[str, torch.Tensor] = {}
    for file in _weight_files(path):
        if not file.is_file():
            raise FileNotFoundError(f"shard {file} named in {INDEX_NAME} is missing")
        try:
            handle = safe_open(str(file), framework="pt", device="cpu")
        except Exception as e:  # safetensors raises its own error types for truncated headers
            raise ValueError(f"{file} is not a readable safetensors file: {e}") from e
        with handle as f:
            for name in f.keys():
                if IGNORED_TENSORS.match(name) or (cfg.tie_embeddings and name == "lm_head.weight"):
                    continue
                if name not in expected:
                    raise ValueError(f"unexpected tensor {name!r} in {file.name}: a {cfg.hf_model_type} model "
                                     f"with this config.json has no such parameter")
                shape = tuple(f.get_slice(name).get_shape())
                want = tuple(expected[name].shape)
                if shape != want:
                    raise ValueError(f"tensor {name!r} in {file.name} has shape {shape}, the model expects {want}")
                try:
                    t = f.get_tensor(name)
                except Exception as e:
                    raise ValueError(f"tensor {name!r} in {file.name} could not be read: {e}") from e
                state[mathlm_name(name)] = t.to(device=device, dtype=dtype or t.dtype)
    missing = sorted(set(expected) - {hf_name(n) for n in state})
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"checkpoint {path} is missing tensor(s) {shown} (expected shapes: "
                         f"{', '.join(str(tuple(expected[m].shape)) for m in missing[:5])})")
    return state


def save_hf_checkpoint(model: Transformer, path: str | os.PathLike, max_shard_size: int | str = "5GB",
                       tokenizer=None, dtype: torch.dtype | None = None) -> Path:
    """Write `model` as a Hugging Face folder at `path` (replaced atomically if it exists).

    Shards are written when the weights exceed `max_shard_size`, with `model.safetensors.index.json`.
    A `tokenizer` (mathlm.Tokenizer) is saved beside the weights (`Tokenizer.save_pretrained`), and
    generation_config.json always (`generation_config`).
    """
    path = Path(path)
    limit = parse_size(max_shard_size)
    cfg: ModelConfig = model.config
    tensors: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        if cfg.tie_embeddings and name == "lm_head.weight":
            continue
        t = t.detach()
        if hasattr(t, "full_tensor"):  # a DTensor from FSDP2: gather it
            t = t.full_tensor()
        tensors[hf_name(name)] = t.to("cpu", dtype=dtype or t.dtype).contiguous()
    out_dtype = next(iter(tensors.values())).dtype
    hf_cfg = cfg.to_hf_config()
    hf_cfg["torch_dtype"] = str(out_dtype).removeprefix("torch.")

    # Greedy sharding in parameter order, as transformers does.
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        with open(tmp / CONFIG_NAME, "w") as f:
            json.dump(hf_cfg, f, indent=2)
        if len(shards) == 1:
            save_file(shards[0], str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        else:
            weight_map = {}
            for i, shard in enumerate(shards, 1):
                fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(tmp / fname), metadata={"format": "pt"})
                weight_map.update({name: fname for name in shard})
            total = sum(t.numel() * t.element_size() for t in tensors.values())
            with open(tmp / INDEX_NAME, "w") as f:
                json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        with open(tmp / GENERATION_CONFIG_NAME, "w") as f:
            json.dump(generation_config(cfg, tokenizer), f, indent=2)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def generation_config(cfg: ModelConfig, tokenizer=None) -> dict:
    """generation_config.json: the tokenizer's (sampling defaults of the source checkpoint kept), with
    `eos_token_id` = every id generation stops on (an int when there is one) and BOS/pad filled in
    from the model's config when missing."""
    out = dict(getattr(tokenizer, "generation_config", None) or {})
    eos = list(getattr(tokenizer, "eos_ids", ()) or ([] if cfg.eos_id is None else [cfg.eos_id]))
    if eos:
        out["eos_token_id"] = eos[0] if len(eos) == 1 else eos
    bos = tokenizer.bos_id if tokenizer is not None else cfg.bos_id
    pad = tokenizer.pad_id if tokenizer is not None else cfg.pad_id
    for key, value in (("bos_token_id", bos), ("pad_token_id", pad)):
        if value is not None:
            out.setdefault(key, value)
    return out


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder `src` to `dst`; an existing `dst` is swapped out, then removed."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
