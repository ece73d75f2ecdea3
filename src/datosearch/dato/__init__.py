"""The DaTo accelerator: feature caching + dynamics-aware token pruning as diffusers hooks."""

from .apply import DaToHandle, apply, remove

__all__ = ["DaToHandle", "apply", "remove"]
