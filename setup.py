"""mathlm: a from-scratch research library for the mathematical reasoning of language models.

The kernel sources live in the top-level ``kernels/`` folder and are installed as ``mathlm.kernels``,
never as a top-level ``kernels`` module (that name belongs to Hugging Face's ``kernels`` package).
The folder has no ``__init__.py``, so it never shadows that package from the repository root either;
the package's ``__init__`` is ``mathlm/kernels/__init__.py`` (docs/architecture.md, "Packaging").
"""
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
KERNELS = "mathlm.kernels"


class build_py_with_kernels(build_py):
    """Copy the top-level kernels/*.py into the wheel's mathlm/kernels/, beside its __init__.py."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package == KERNELS:
            modules += [(package, f.stem, str(f.relative_to(ROOT))) for f in sorted((ROOT / "kernels").glob("*.py"))]
        return modules


setup(
    name="mathlm",
    version="0.1.0",
    description="Math reasoning for language models: model, Triton kernels, data, SFT/RFT/DPO/PPO/GRPO",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mathlm", "mathlm.*"]),
    cmdclass={"build_py": build_py_with_kernels},
    install_requires=[
        "torch>=2.6",
        "numpy",
        "sentencepiece",
        "safetensors",
        "einops",
        "sympy",  # symbolic answer equality in mathlm.grading
        "tokenizers",  # byte-level BPE tokenizer.json of Qwen2 / Llama-3 / DeepSeek checkpoints
        "jinja2",  # chat templates, rendered as transformers renders them
        "pyarrow",  # parquet datasets (MATH, NuminaMath, ... as published)
    ],
    extras_require={
        "triton": ["triton>=3.0"],
        "plot": ["matplotlib"],
        "test": ["pytest", "transformers>=4.45", "triton>=3.0", "matplotlib", "math-verify"],
    },
)
