"""The wheel, built from a clean copy of the checkout and installed (not editable) in a fresh venv.

What `pip install .` gives a user must hold the whole package: every module of ``proxy/``,
``client/``, ``config/`` and ``store/`` (found through the ``tina4_sidecar/`` symlinks, never
listed by hand), importable from the installed copy, with a working console script. A new
subpackage lands in the wheel with no edit to pyproject.toml.

The wheel is built with the venv's setuptools (the lock's), without build isolation, so the test
needs no network; the fresh venv takes the dependencies from the project's venv through a
``.pth`` line (the project itself only from the wheel: the editable install's finder is not
loaded that way).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import tina4_sidecar
from tests.deploy.deploy_files import REPO

PACKAGES = ("proxy", "client", "config", "store")
pytestmark = pytest.mark.timeout(300)


def clean_copy(destination: Path) -> Path:
    """The files git would commit (tracked, and new ones not ignored), symlinks kept as links."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet in the index
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        else:
            shutil.copy2(source, target)
    return destination


def build_wheel(tree: Path) -> Path:
    out = tree / "dist"
    code = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=tree, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def modules_in_tree(tree: Path) -> set[str]:
    names = {"tina4_sidecar/__init__.py"}
    for package in PACKAGES:
        names |= {f"tina4_sidecar/{path.relative_to(tree)}" for path in (tree / package).rglob("*.py")}
    return names


def modules_in_wheel(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if name.endswith(".py")}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tree = clean_copy(tmp_path_factory.mktemp("clean"))
    return tree, build_wheel(tree)


def test_the_wheel_holds_every_module_of_the_tree(built: tuple[Path, Path]) -> None:
    tree, wheel = built

    in_wheel = modules_in_wheel(wheel)

    assert in_wheel == modules_in_tree(tree)
    assert len(in_wheel) == len(modules_in_tree(REPO))  # the same count as the checkout
    assert not any(name.startswith(("proxy/", "client/", "config/", "store/", "tests/")) for name in in_wheel)


def test_installed_from_the_wheel_every_module_imports_and_the_cli_runs(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    _, wheel = built
    fresh = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(fresh)
    python = fresh / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "project-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    every_module = (
        "import importlib, pkgutil, sys, tina4_sidecar\n"
        "names = [m.name for m in pkgutil.walk_packages(tina4_sidecar.__path__, 'tina4_sidecar.')]\n"
        "for name in names:\n"
        "    module = importlib.import_module(name)\n"
        "    assert module.__file__.startswith(sys.argv[1]), (name, module.__file__)\n"
        "print(len(names))\n"
    )

    imported = subprocess.run(
        [str(python), "-c", every_module, site], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    version = subprocess.run(
        [str(fresh / "bin" / "tina4-sidecar"), "--version"], cwd=tmp_path, capture_output=True, text=True
    )

    assert imported.returncode == 0, imported.stderr[-3000:]
    expected = len(modules_in_tree(REPO)) - 1  # every module but tina4_sidecar/__init__.py itself
    assert int(imported.stdout) == expected
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"tina4-sidecar {tina4_sidecar.__version__}"


def test_a_new_subpackage_is_in_the_wheel_with_no_other_edit(tmp_path: Path) -> None:
    tree = clean_copy(tmp_path / "scratch")
    (tree / "proxy" / "example_sub").mkdir()
    (tree / "proxy" / "example_sub" / "__init__.py").write_text('"""A subpackage nobody listed."""\n')

    in_wheel = modules_in_wheel(build_wheel(tree))

    assert "tina4_sidecar/proxy/example_sub/__init__.py" in in_wheel
    assert (tree / "pyproject.toml").read_bytes() == (REPO / "pyproject.toml").read_bytes()
