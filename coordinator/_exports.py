"""A package's public names, declared once, loaded on first use (PEP 562).

A package lists its public names once, as the ``from ._module import Name as Name`` lines of
its ``if TYPE_CHECKING:`` block: type checkers read that block, and :func:`lazy_exports` reads
the same lines from the source at import time. Nothing is imported until a name is first used,
so ``import coordinator`` costs neither Trio nor capnp (the command line needs that).

Each object loaded this way reports the package as its module (``coordinator.CycleError``,
not ``coordinator._errors.CycleError``), as trio's ``fixup_module_metadata`` does, so
tracebacks, reprs and pickles name the public path; so does every other public object of a
module loaded on the way (an error class is fixed even if only ``open_coordinator`` was used).
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, init_file: str
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for ``package`` (whose ``__init__.py`` is
    ``init_file``), from the ``from .x import Y as Y`` lines of its TYPE_CHECKING block."""
    exports = _declared(Path(init_file).read_text(encoding="utf-8"), package)
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        importlib.import_module(module)
        _publish(package, exports, namespace)
        return namespace[name]

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return sorted(exports), __getattr__, __dir__


def _declared(source: str, package: str) -> dict[str, str]:
    """``{name: absolute module}`` from the TYPE_CHECKING block's ``from .x import Y as Y``."""
    exports: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for line in node.body:
                if not isinstance(line, ast.ImportFrom) or not line.level or line.level > 1:
                    raise ValueError(f"{package}: only 'from .x import Y as Y' lines here")
                for alias in line.names:
                    if alias.asname != alias.name:
                        raise ValueError(f"{package}: write 'import {alias.name} as {alias.name}'")
                    exports[alias.name] = f"{package}.{line.module}"
    return exports


def _publish(package: str, exports: dict[str, str], namespace: dict[str, Any]) -> None:
    """Put every export whose module is loaded into the package's namespace, and make the
    classes and functions defined there say they live in ``package``."""
    for name, module in exports.items():
        if name in namespace or module not in sys.modules:
            continue
        value = getattr(sys.modules[module], name)
        if callable(value) and getattr(value, "__module__", None) == module:
            try:
                value.__module__ = package
            except (AttributeError, TypeError):
                pass
        namespace[name] = value
