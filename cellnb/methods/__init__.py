"""The method layer: each paper's recipe (model, loss, targets, normalisation, post-processing,
predictor) in one module, found by name.

>>> from cellnb.methods import get_method, list_methods
>>> "classical" in list_methods("instances")
True
"""

from __future__ import annotations

from cellnb.methods.base import TASKS, Method, Prediction, get_method, list_methods, register_method

def _import_all() -> None:
    """Import every module of this package: importing a module registers its methods."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_all()

__all__ = ["TASKS", "Method", "Prediction", "get_method", "list_methods", "register_method"]
