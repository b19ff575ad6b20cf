"""pytest fixtures for the simulated provider (registered as a pytest11 entry point).

``sim_server``: one SimServer for the whole session.
``sim``: that server with counts, requests, disconnects and scripts cleared.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import SimServer


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimServer]:
    with SimServer() as server:
        yield server


@pytest.fixture
def sim(sim_server: SimServer) -> SimServer:
    sim_server.reset(scripts=True)
    return sim_server
