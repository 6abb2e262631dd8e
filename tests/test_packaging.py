"""The install layout: `kernels/` ships as `mathlm.kernels`, never as a top-level `kernels` module
(that name belongs to another package), in regular (wheel) and editable installs."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_maps_kernels_under_mathlm(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {r.stderr[-300:]}")
    (wheel,) = tmp_path.glob("mathlm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mathlm/kernels/__init__.py" in names
    assert "mathlm/model.py" in names
    top = {n.split("/")[0] for n in names}
    assert "kernels" not in top, sorted(top)
    assert not any(t in top for t in ("tests", "recipes", "benchmarks"))


def test_installed_package_has_no_top_level_kernels(tmp_path):
    code = ("import importlib.util, mathlm.kernels, pathlib; "
            "print(importlib.util.find_spec('kernels') is None); "
            "print(pathlib.Path(mathlm.kernels.__file__).parent.name)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    no_top_level, folder = out.stdout.split()
    assert no_top_level == "True"
    assert folder == "kernels"
