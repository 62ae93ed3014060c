"""One model registry for the whole book (timm's ``register_model`` / ``create_model``).

Every model's ``forward`` returns a ``dict[str, Tensor]`` whose keys come from
:mod:`cellnb.models.outputs`, so losses, metrics and plots are shared across chapters.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a model class or factory under ``name``."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments; never downloads weights."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; choose from {list_models()}")
    return _REGISTRY[name](**kwargs)


def list_models() -> list[str]:
    """Sorted names of all registered models."""
    return sorted(_REGISTRY)
