"""``POST /v1/embeddings`` with the openai SDK (which asks for base64 by default) and plain
JSON floats, through ``Orchestrator.aembed`` to the simulated provider."""

from __future__ import annotations

import math

import pytest


def test_the_sdk_gets_one_vector_per_text(client, gateway, sim):
    r = client.embeddings.create(model="oa", input=["red apple", "green apple", "blue sky"])
    assert [d.index for d in r.data] == [0, 1, 2]
    width = len(r.data[0].embedding)
    assert width > 0 and all(len(d.embedding) == width for d in r.data)
    assert r.usage.prompt_tokens > 0
    assert sim.last_request()["path"].endswith("/embeddings")
    # The same vectors as JSON floats (the SDK decoded base64 above).
    plain = gateway.post("/v1/embeddings", {"model": "oa", "input": "red apple",
                                            "encoding_format": "float"}).json()  # fmt: skip
    pairs = zip(plain["data"][0]["embedding"], r.data[0].embedding, strict=True)
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in pairs)


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"input": [[1, 2, 3]]}, "input"), ({"dimensions": 8}, "dimensions"),
     ({"encoding_format": "int8"}, "encoding_format"), ({"frob": 1}, "frob")],
)  # fmt: skip
def test_refusals_name_the_parameter(gateway, sim, fields, param):
    response = gateway.post("/v1/embeddings", {"model": "oa", "input": "x", **fields})
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert sim.request_count() == 0
