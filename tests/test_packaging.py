"""The distribution installs the product's folders under one namespace, editable and as a wheel."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAMESPACES = ("gkd_deploy", "gkd_deploy.cli", "gkd_deploy.exporters", "gkd_deploy.calib")


def test_editable_install_maps_the_folders():
    import importlib

    for name, folder in zip(NAMESPACES, ("gkd_deploy", "cli", "exporters", "calib")):
        module = importlib.import_module(name)
        assert Path(module.__file__).parent == ROOT / folder


@pytest.mark.slow
def test_built_wheel_imports_every_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("gkd_deploy-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "gkd_deploy/cli/app.py" in names and "gkd_deploy/exporters/__init__.py" in names
    assert not any(name.startswith(("cli/", "tests/")) for name in names), "no generic top-level package"
    # Every module of the source folders is in the wheel under its namespace.
    folders = {"gkd_deploy": ROOT / "gkd_deploy", "gkd_deploy/cli": ROOT / "cli",
               "gkd_deploy/exporters": ROOT / "exporters", "gkd_deploy/calib": ROOT / "calib"}
    for prefix, folder in folders.items():
        for source in folder.rglob("*.py"):
            relative = source.relative_to(folder)
            if relative.parts[0] in ("cli", "exporters", "calib") and prefix == "gkd_deploy":
                continue
            assert f"{prefix}/{relative.as_posix()}" in names, f"{source} is missing from the wheel"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
                   check=True)
    probe = ("import sys, importlib; sys.path.insert(0, sys.argv[1]); "
             "mods = [importlib.import_module(n) for n in sys.argv[2:]]; "
             "print('\\n'.join(m.__file__ for m in mods))")
    out = subprocess.run([sys.executable, "-c", probe, str(target), *NAMESPACES], check=True, cwd=tmp_path,
                         capture_output=True, text=True).stdout.split()
    assert len(out) == len(NAMESPACES)
    assert all(path.startswith(str(target)) for path in out), out
    entry = [line for line in zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode().splitlines()]
    assert "gkd = gkd_deploy.cli:main" in entry
