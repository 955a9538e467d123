"""The distribution ships every package of the tree (pyproject.toml lists them by hand)."""

from __future__ import annotations

from pathlib import Path

from hostkit._compat import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_of_hostkit_and_the_built_in_plugins_is_listed() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for name, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join((name, *relative.parts)))
    assert found - listed == set(), "packages missing from pyproject.toml"
    assert listed - found == set(), "pyproject.toml lists packages that do not exist"
