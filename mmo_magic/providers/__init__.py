"""Model clients: one async interface over every provider. Imports only the core."""

from __future__ import annotations

from .base import ModelClient, StreamItem
from .function import FunctionClient, register_function, unregister_function
from .registry import make_client, register_provider

__all__ = [
    "FunctionClient",
    "ModelClient",
    "StreamItem",
    "make_client",
    "register_function",
    "register_provider",
    "unregister_function",
]
