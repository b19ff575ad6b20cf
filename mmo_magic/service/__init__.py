"""The HTTP service (mmo-serve): the only layer that imports fastapi, starlette or uvicorn.

One concern per module: ``schemas`` (request and response bodies), ``errors``
(the package's errors as OpenAI-shaped HTTP errors), ``auth`` (the key and
body-size gate), ``disconnect`` (cancelling a call when its client leaves),
``streaming`` (SSE, for every wire), the wires besides chat (``responses``,
``messages``, ``legacy``, ``embeddings``), ``clients`` and ``costs`` (client keys:
allowlists, limits, budget holds, charging), ``admin`` (the keys and spend API),
``metrics`` (Prometheus), ``deployments`` (several per name), ``reload`` (SIGHUP),
``app`` (``create_app`` and the routes), ``cli`` and ``keys_cli`` (``mmo-serve``).
"""

from .app import create_app
from .auth import PUBLIC_PATHS
from .cli import main

__all__ = ["PUBLIC_PATHS", "create_app", "main"]
