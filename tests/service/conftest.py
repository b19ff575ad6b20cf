"""Fixtures of the gateway's test modules: ``gateway``, the service over the three simulated
models on a free port (one per module), and ``client``, the openai SDK pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from helpers import KEY, Service, plain_service


@pytest.fixture(scope="module")
def gateway(sim_server: Any) -> Iterator[Service]:
    with plain_service(sim_server) as service:
        yield service


@pytest.fixture
def client(gateway: Service) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0) as client:
        yield client
