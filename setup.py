"""mathlm: a from-scratch research library for the mathematical reasoning of language models.

The top-level ``kernels/`` folder is installed as ``mathlm.kernels`` (never as a top-level
``kernels`` module: that name belongs to another package).
"""
from setuptools import find_packages, setup

setup(
    name="mathlm",
    version="0.1.0",
    description="Math reasoning for language models: model, Triton kernels, data, SFT/RFT/DPO/PPO/GRPO",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mathlm", "mathlm.*"]) + ["mathlm.kernels"],
    package_dir={"mathlm.kernels": "kernels"},
    install_requires=[
        "torch>=2.6",
        "numpy",
        "sentencepiece",
        "safetensors",
        "einops",
        "sympy",  # symbolic answer equality in mathlm.grading
    ],
    extras_require={
        "triton": ["triton>=3.0"],
        "plot": ["matplotlib"],
        "test": ["pytest", "transformers>=4.45", "triton>=3.0", "matplotlib"],
    },
)
