"""mathlm: teaching language models mathematical reasoning, from scratch in PyTorch.

What notebooks use is re-exported here; everything else lives in its own module
(mathlm.model, mathlm.checkpoint, mathlm.tokenizer, mathlm.sandbox, mathlm.data, mathlm.grading, ...).
"""
from .config import PRESETS, ModelConfig
from .model import KVCache, Transformer
from .checkpoint import load_hf_checkpoint, save_hf_checkpoint
from .tokenizer import PROMPT_TEMPLATE, Tokenizer

__version__ = "0.1.0"

__all__ = [
    "ModelConfig", "PRESETS", "Transformer", "KVCache",
    "load_hf_checkpoint", "save_hf_checkpoint", "Tokenizer", "PROMPT_TEMPLATE",
]
