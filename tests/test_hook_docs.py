"""docs/hooks.md documents every hook of hostkit/hookspecs.py with its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from hostkit import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"


def hook_specs() -> dict[str, object]:
    return {name: fn for name, fn in vars(hookspecs).items()
            if name.startswith("hostkit_") and inspect.isfunction(fn)}


def written_signature(fn: object) -> str:
    """``def name(param: Type, …) -> Type`` as the spec declares it (annotations as written)."""
    signature = inspect.signature(fn)  # type: ignore[arg-type]
    params = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
    return f"def {fn.__name__}({params}) -> {signature.return_annotation}"  # type: ignore[attr-defined]


def documented() -> dict[str, str]:
    """Each ``## hook`` section's first ``def`` line."""
    sections = re.split(r"^## ", DOCS.read_text(), flags=re.MULTILINE)[1:]
    result = {}
    for section in sections:
        name = section.split("\n", 1)[0].strip()
        match = re.search(rf"^def {re.escape(name)}\(.*$", section, flags=re.MULTILINE)
        result[name] = match.group(0) if match else ""
    return result


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    docs = documented()
    specs = hook_specs()
    assert specs, "no hook specs found"
    for name, fn in specs.items():
        assert name in docs, f"{name} is not documented in docs/hooks.md"
        assert docs[name] == written_signature(fn), f"docs/hooks.md has a stale signature of {name}"


def test_docs_name_no_hook_that_does_not_exist() -> None:
    assert set(documented()) <= set(hook_specs())
