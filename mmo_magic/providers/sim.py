"""The client for the simulated provider (mmo_magic.sim), spoken over the OpenAI wire format."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..core.models import ModelConfig
from ..core.redaction import read_key
from .openai import OpenAIClient

if TYPE_CHECKING:
    from ..sim import SimServer

__all__ = ["SimClient", "shared_sim_server"]

_lock = threading.Lock()
_server: SimServer | None = None


def shared_sim_server() -> SimServer:
    """One simulated provider per process, started on first use (127.0.0.1, free port)."""
    global _server
    with _lock:
        if _server is None:
            from ..sim import SimServer

            server = SimServer()
            server.start()
            _server = server
        return _server


class SimClient(OpenAIClient):
    """A simulated model: a real HTTP round trip to the local simulated provider."""

    def __init__(self, config: ModelConfig) -> None:
        wired = config
        if config.base_url is None:
            wired = config.replace(base_url=shared_sim_server().openai_base_url)
        super().__init__(wired)
        # Keep the config as given: the orchestrator reuses a client only while
        # its config is unchanged, and a rebuilt SDK client costs ~80 ms of CPU.
        self.config = config

    def _api_key(self) -> str:
        return read_key(self.config.api_key_env) or "sim-key"
