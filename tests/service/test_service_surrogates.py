"""Lone surrogates sent to the gateway (issue 27 #7): a 400 naming the field, never a 500 or a
reset connection."""

from __future__ import annotations

from helpers import KEY, plain_service

JSON = {"content-type": "application/json"}


def test_a_lone_surrogate_gets_a_400_naming_its_place(sim_server):
    complete = b'{"prompt": "hi", "system": "\\udc00", "model": "oa"}'
    tool = (
        b'{"model": "oa", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": '
        b'"function", "function": {"name": "a\\ud800b", "parameters": {"type": "object"}}}]}'
    )
    with plain_service(sim_server) as service, service.http(KEY) as http:
        first = http.post("/v1/complete", content=complete, headers=JSON)
        second = http.post("/v1/chat/completions", content=tool, headers=JSON)
        after = http.post("/v1/complete", json={"prompt": "still fine", "model": "oa"})
    assert first.status_code == 400 and first.json()["error"]["param"] == "system"
    assert second.status_code == 400
    assert second.json()["error"]["param"] == "tools.0.function.name"
    assert after.status_code == 200
