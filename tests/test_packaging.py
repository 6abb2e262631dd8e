"""The install layout: the top-level `kernels/` folder ships as `mathlm.kernels` and never acts as a
top-level `kernels` module, from any working directory: that name belongs to Hugging Face's `kernels`
distribution, which transformers 5.x imports whenever it builds a model."""
import ast
import importlib.metadata
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL_SOURCES = sorted(p.name for p in (ROOT / "kernels").glob("*.py"))


def run_python(code: str, cwd: Path, pythonpath: list[Path] = ()) -> str:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    r = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {r.stderr[-300:]}")
    (path,) = out.glob("mathlm-*.whl")
    return path


def test_top_level_kernels_folder_is_not_a_regular_package():
    # Without __init__.py the folder is at most a namespace portion, which never wins over a regular
    # package or module of the same name, wherever the two stand on sys.path.
    assert not (ROOT / "kernels" / "__init__.py").exists()
    assert "flash_attention.py" in KERNEL_SOURCES


def test_wheel_ships_kernels_under_mathlm_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "mathlm/kernels/__init__.py" in names
    assert {f"mathlm/kernels/{name}" for name in KERNEL_SOURCES} <= set(names)
    assert "mathlm/model.py" in names
    top = {n.split("/")[0] for n in names}
    assert not top & {"kernels", "tests", "recipes", "benchmarks"}, sorted(top)


def test_installed_wheel_imports_its_own_kernel_modules(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import mathlm.kernels as K, mathlm.kernels.sparse_layouts as L; "
            "print(list(K.__path__), L.__file__, callable(K.flash_attention))")
    out = run_python(code, cwd=tmp_path, pythonpath=[target])
    assert out == f"{[str(target / 'mathlm' / 'kernels')]} {target / 'mathlm' / 'kernels' / 'sparse_layouts.py'} True"


def test_repo_root_never_shadows_another_top_level_kernels(tmp_path):
    """A stand-in for another distribution's regular `kernels` package, placed *after* the repo root on
    sys.path (python -c from the root puts the root first): the import must find the stand-in."""
    other = tmp_path / "other_site" / "kernels"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("WHO = 'the other distribution'\n")
    out = run_python("import kernels, mathlm.kernels as K; print(kernels.WHO, '|', K.flash_attention.__module__)",
                     cwd=ROOT, pythonpath=[tmp_path / "other_site"])
    assert out == "the other distribution | mathlm.kernels.flash_attention"


def test_mathlm_kernels_resolve_to_the_repo_sources_from_anywhere(tmp_path):
    out = run_python("import sys, mathlm.kernels; print(sys.modules['mathlm.kernels.flash_attention'].__file__)",
                     cwd=tmp_path)
    assert Path(out) == ROOT / "kernels" / "flash_attention.py"


def test_transformers_builds_a_model_from_the_repo_root():
    pytest.importorskip("transformers")
    code = ("import importlib.util, transformers as T; "
            "m = T.LlamaForCausalLM(T.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, "
            "num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)); "
            "spec = importlib.util.find_spec('kernels'); "
            "print(sum(p.numel() for p in m.parameters()), spec.origin if spec else None)")
    n_params, origin = run_python(code, cwd=ROOT).split()
    # embed 64*16 + lm_head 64*16 + q 16*16 + k,v 2*16*8 + o 16*16 + mlp 3*16*32 + norms 3*16
    assert int(n_params) == 2 * 64 * 16 + 2 * 16 * 16 + 2 * 16 * 8 + 3 * 16 * 32 + 3 * 16
    try:
        importlib.metadata.distribution("kernels")
    except importlib.metadata.PackageNotFoundError:
        return
    assert origin != "None" and not origin.startswith(str(ROOT)), origin  # HF's package, not our folder


def test_recipes_never_edit_sys_path():
    for path in sorted((ROOT / "recipes").glob("*.py")):
        tree = ast.parse(path.read_text())
        edits = [node.lineno for node in ast.walk(tree)
                 if isinstance(node, ast.Attribute) and node.attr == "path"
                 and isinstance(node.value, ast.Name) and node.value.id == "sys"]
        assert not edits, f"{path.name} touches sys.path on lines {edits}"


def test_a_recipe_runs_from_the_repo_root(tmp_path):
    """The README's `python recipes/sft.py ...` from the root, with the installed package: one step,
    and its final folder is a Hugging Face checkpoint folder."""
    out = tmp_path / "sft"
    r = subprocess.run([sys.executable, "recipes/sft.py", "--max_steps", "1", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 1
    assert {"config.json", "model.safetensors"} <= {p.name for p in (out / "final").iterdir()}
