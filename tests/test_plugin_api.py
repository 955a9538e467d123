"""The import graph the layout promises: plugins use the declared plugin API, nothing else.

- hostkit's built-in plugins and the third-party sample import only ``hostkit`` and
  ``hostkit.plugin`` of hostkit (any other ``hostkit.*`` module is internal);
- no plugin imports another plugin;
- the core imports no plugin.

Imports are read from the source with ``ast``, inside functions too, so a lazy import counts.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

import hostkit.plugin

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = {
    "hostkit_inprocess": ROOT / "plugins" / "hostkit_inprocess",
    "hostkit_outofprocess": ROOT / "plugins" / "hostkit_outofprocess",
    "hostkit_uvicorn": ROOT / "samples" / "hostkit_uvicorn" / "hostkit_uvicorn",
}
ALLOWED_HOSTKIT_MODULES = {"hostkit", "hostkit.plugin"}


def _imports(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line, imported module, imported name or None) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield node.lineno, node.module, alias.name


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _hostkit_modules_used(module: str, name: str | None) -> set[str]:
    """The hostkit modules an import statement reaches: ``from hostkit import tls`` reaches
    ``hostkit.tls``; ``from hostkit import Host`` only ``hostkit``."""
    if module != "hostkit" and not module.startswith("hostkit."):
        return set()
    if name is not None and _is_module(f"{module}.{name}"):
        return {f"{module}.{name}"}
    return {module}


def _violations(package: str, folder: Path) -> list[str]:
    found: list[str] = []
    others = set(PLUGINS) - {package}
    for path in sorted(folder.rglob("*.py")):
        for line, module, name in _imports(path):
            where = f"{path.relative_to(folder.parent)}:{line}"
            for used in _hostkit_modules_used(module, name) - ALLOWED_HOSTKIT_MODULES:
                found.append(f"{where} imports {used} (use hostkit or hostkit.plugin)")
            if module.split(".")[0] in others:
                found.append(f"{where} imports the plugin {module}")
    return list(dict.fromkeys(found))


@pytest.mark.parametrize("package", sorted(PLUGINS))
def test_a_plugin_imports_only_hostkit_and_the_plugin_api(package: str) -> None:
    assert _violations(package, PLUGINS[package]) == []


def test_the_check_sees_an_internal_import(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "import hostkit\nfrom hostkit import tls\nfrom hostkit.listeners import bind_all\n"
        "def late():\n    import hostkit_outofprocess.module\n")
    folder = tmp_path.name
    assert _violations("hostkit_inprocess", tmp_path) == [
        f"{folder}/bad.py:2 imports hostkit.tls (use hostkit or hostkit.plugin)",
        f"{folder}/bad.py:3 imports hostkit.listeners (use hostkit or hostkit.plugin)",
        f"{folder}/bad.py:5 imports the plugin hostkit_outofprocess.module"]


def test_the_core_imports_no_plugin() -> None:
    found = [f"{path.relative_to(ROOT)}:{line} imports {module}"
             for path in sorted((ROOT / "hostkit").rglob("*.py"))
             for line, module, _ in _imports(path)
             if module.split(".")[0] in PLUGINS]
    assert found == []


def test_every_name_of_the_plugin_api_exists() -> None:
    missing = [name for name in hostkit.plugin.__all__ if not hasattr(hostkit.plugin, name)]
    assert missing == []
    assert importlib.import_module("hostkit.plugin").hookimpl is hostkit.hookimpl
