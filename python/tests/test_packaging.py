"""The wheel builds offline and installs a working package (what `make
python-wheel` does, into a temporary folder)."""

import os
import subprocess
import sys
import zipfile

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_builds_offline(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    build = tmp_path / "src"
    # Build from a copy, so the source tree gets no build/ or egg-info.
    os.makedirs(build)
    for f in ("pyproject.toml", "README.md"):
        subprocess.run(["cp", os.path.join(PYTHON_DIR, f), str(build)], check=True)
    subprocess.run(["cp", "-r", os.path.join(PYTHON_DIR, "leasehold"), str(build)], check=True)
    out = subprocess.run([sys.executable, "-c", "from setuptools import build_meta as b; print(b.build_wheel('dist'))"],
                         cwd=build, capture_output=True, text=True, env=dict(os.environ, PIP_NO_INDEX="1"))
    assert out.returncode == 0, out.stderr
    whl = build / "dist" / out.stdout.strip().splitlines()[-1]
    names = zipfile.ZipFile(whl).namelist()
    for mod in ("elector", "lock", "holder", "observer", "record", "client", "candidate", "signals"):
        assert f"leasehold/{mod}.py" in names, names
    meta = zipfile.ZipFile(whl).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: kubernetes" in meta
    # The installed package imports from the wheel alone.
    check = subprocess.run([sys.executable, "-c", "import leasehold, sys; print(leasehold.__file__)"],
                           env=dict(os.environ, PYTHONPATH=str(whl)), capture_output=True, text=True, cwd=str(tmp_path))
    assert check.returncode == 0 and str(whl) in check.stdout, check.stderr
