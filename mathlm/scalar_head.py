"""A transformer with a scalar head: reward models, critique models and PPO value functions.

The backbone is a mathlm `Transformer` (its final hidden states, `return_hidden=True`); the head is
one linear layer to a scalar per position. A sequence's score is the head's output at its last real
token (as Hugging Face's `*ForSequenceClassification` and TRL's reward models do); a value function
uses every position.

Saved as a folder: the backbone in Hugging Face layout (mathlm.checkpoint) plus `score_head.safetensors`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .checkpoint import load_hf_checkpoint, replace_dir, save_hf_checkpoint
from .model import Transformer

HEAD_FILE = "score_head.safetensors"


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 0/1 mask -> (B,) index of each row's last real token (left or right padding)."""
    T = attention_mask.shape[1]
    positions = torch.arange(T, device=attention_mask.device).expand_as(attention_mask)
    return torch.where(attention_mask.bool(), positions, torch.full_like(positions, -1)).amax(1).clamp_min(0)


def write_scalar_head_folder(path: str | os.PathLike, backbone, head_state: dict[str, torch.Tensor], tokenizer=None,
                             dtype: torch.dtype | None = None, **extra_meta) -> Path:
    """The scalar-head folder layout: `backbone` (anything with `config` and `state_dict()`, as
    save_hf_checkpoint reads) in HF layout (cast to `dtype` when given), the head's tensors in
    HEAD_FILE, `extra_meta` in head_meta.json; written beside `path` and swapped in atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.writing-{os.getpid()}")
    save_hf_checkpoint(backbone, tmp, tokenizer=tokenizer, dtype=dtype)
    save_file({k: v.detach().cpu().contiguous() for k, v in head_state.items()}, str(tmp / HEAD_FILE))
    if extra_meta:
        (tmp / "head_meta.json").write_text(json.dumps(extra_meta, indent=2))
    replace_dir(tmp, path)
    return path


class ScalarHeadModel(nn.Module):
    """`model(tokens, attention_mask)` -> (B, T) scalars; `model.score(...)` -> (B,) at the last real token."""

    def __init__(self, backbone: Transformer, init_std: float | None = None):
        super().__init__()
        self.backbone = backbone
        dim = backbone.config.dim
        w = backbone.embed_tokens.weight
        self.head = nn.Linear(dim, 1, device=w.device, dtype=w.dtype)
        if w.device.type != "meta":
            nn.init.normal_(self.head.weight, std=init_std if init_std is not None else 1.0 / (dim + 1) ** 0.5)
            nn.init.zeros_(self.head.bias)

    @property
    def config(self):
        return self.backbone.config

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        hidden = self.backbone(tokens, attention_mask=attention_mask, return_hidden=True, **kwargs)  # (B, T, dim)
        return self.head(hidden).squeeze(-1).float()  # (B, T)

    def score(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) scalar of each sequence, read at its last real token."""
        values = self(tokens, attention_mask=attention_mask)
        if attention_mask is None:
            return values[:, -1]
        return values.gather(1, last_token_index(attention_mask)[:, None]).squeeze(1)

    # ---- persistence

    def save(self, path: str | os.PathLike, tokenizer=None, **extra_meta) -> Path:
        """Backbone (HF layout) + head (+ `head_meta.json` from `extra_meta`), the folder replaced atomically."""
        return write_scalar_head_folder(path, self.backbone, self.head.state_dict(), tokenizer, **extra_meta)

    @classmethod
    def load(cls, path: str | os.PathLike, dtype: torch.dtype | None = None, device="cpu") -> "ScalarHeadModel":
        path = Path(path)
        if not (path / HEAD_FILE).is_file():
            raise FileNotFoundError(f"{path / HEAD_FILE} not found: {path} is not a scalar-head checkpoint")
        model = cls(load_hf_checkpoint(path, dtype=dtype, device=device))
        state = load_file(str(path / HEAD_FILE), device=str(device))
        want = {k: tuple(v.shape) for k, v in model.head.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in state.items()}
        if want != got:
            raise ValueError(f"{path / HEAD_FILE} holds tensors {got}, the head expects {want}")
        model.head.load_state_dict({k: v.to(model.head.weight.dtype) for k, v in state.items()})
        return model

