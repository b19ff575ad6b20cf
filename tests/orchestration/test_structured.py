"""Structured output through the Orchestrator: response_format, r.parsed, failures, the cache."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import sim_models
from pydantic import BaseModel

import mmo_magic as mmo
from mmo_magic.core.structured import StructuredOutputError, response_format
from mmo_magic.storage.cache import ResponseCache


class City(BaseModel):
    name: str
    population: int
    capital: bool
    tags: list[str]


SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "confidence": {"type": "number"},
        "level": {"enum": ["low", "high"]},
    },
    "required": ["answer", "confidence", "level"],
}


@pytest.mark.parametrize("name", ["oa", "an", "lo"])
def test_pydantic_class_round_trip_on_every_sim_path(orc, name):
    r = orc.complete("Tell me about Paris", model=name, response_format=City)
    assert r.ok and isinstance(r.parsed, City)
    assert City.model_validate_json(r.content) == r.parsed


@pytest.mark.parametrize("name", ["oa", "an", "lo"])
def test_json_schema_dict_gives_decoded_json(orc, name):
    r = orc.complete("How sure are you?", model=name, response_format=SCHEMA)
    assert r.parsed == {"answer": "simulated answer", "confidence": 1.5, "level": "low"}


@pytest.mark.parametrize("name", ["oa", "an"])
def test_stream_takes_response_format(orc, name):
    text = "".join(orc.stream("Paris?", model=name, response_format=City))
    City.model_validate_json(text)


async def test_acomplete_and_astream_take_response_format(orc):
    r = await orc.acomplete("Paris?", model="an", response_format=City)
    assert isinstance(r.parsed, City)
    parts = [t async for t in orc.astream("Paris?", model="oa", response_format=SCHEMA)]
    assert json.loads("".join(parts))["level"] == "low"


def test_free_text_has_no_parsed(orc):
    assert orc.complete("hi", model="oa").parsed is None


def test_invalid_json_fails_and_keeps_the_raw_text(orc):
    name = "oa:literal"
    orc.add_model(
        orc.catalogue.resolve("oa").replace(name=name, model_id="sim-fast?reply=not+json")
    )
    with pytest.raises(StructuredOutputError) as info:
        orc.complete("Paris?", model=name, response_format=City)
    assert info.value.raw == "not json" and "not valid JSON" in str(info.value)
    record = orc.runs.records()[-1]
    assert record.status == "error" and record.response == "not json"
    assert record.error_type == "StructuredOutputError"


def test_invalid_json_is_retried_then_fails_over(orc, sim):
    bad = "oa:bad"
    orc.add_model(
        orc.catalogue.resolve("oa").replace(name=bad, model_id="sim-fast?reply=nope", max_retries=1)
    )
    r = orc.complete("Paris?", model=bad, fallbacks=["an"], response_format=City)
    assert r.model == "an" and isinstance(r.parsed, City)
    assert [a.status for a in r.attempts] == ["error", "error", "ok"]


def test_schema_mismatch_is_a_failure(orc):
    name = "oa:wrong"
    orc.add_model(
        orc.catalogue.resolve("oa").replace(name=name, model_id='sim-fast?reply={"answer":+3}')
    )
    with pytest.raises(StructuredOutputError, match="does not fit"):
        orc.complete("x?", model=name, response_format=SCHEMA)


def test_bad_response_format_is_refused():
    with pytest.raises(mmo.MMOError, match="response_format"):
        response_format(42)


def test_cache_key_differs_by_schema(sim, keys, tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:", cache=cache) as o:
        first = o.complete("Paris?", response_format=City)
        again = o.complete("Paris?", response_format=City)
        other = o.complete("Paris?", response_format=SCHEMA)
        plain = o.complete("Paris?")
    assert again.cached and isinstance(again.parsed, City) and again.parsed == first.parsed
    assert not other.cached and other.parsed["level"] == "low"
    assert not plain.cached and plain.parsed is None


def test_import_does_not_load_pydantic():
    code = "import sys, mmo_magic; assert 'pydantic' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- through the gateway (service/): the openai SDK in front, the sim behind ----------------


@pytest.fixture
def gateway(sim, keys):  # type: ignore[no-untyped-def]
    import socket
    import threading
    import time

    import uvicorn

    from mmo_magic.service import create_app

    orc = mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:", cache=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(orc, keys=["k-123"]), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    with orc:
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()


@pytest.mark.parametrize("model", ["oa", "an", "lo"])
def test_gateway_passes_response_format_to_every_provider(gateway, sim, model):
    import openai

    with openai.OpenAI(base_url=gateway, api_key="k-123", max_retries=0) as client:
        r = client.beta.chat.completions.parse(
            model=model, messages=[{"role": "user", "content": "Paris?"}], response_format=City
        )
        assert isinstance(r.choices[0].message.parsed, City)
        body = sim.last_request()["body"]
        assert ("tools" if model == "an" else "response_format") in body
        chunks = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "JSON please"}], stream=True,
            response_format={"type": "json_object"},
        )  # fmt: skip
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert isinstance(json.loads(text), dict)
        if model != "an":
            assert sim.last_request()["body"]["response_format"] == {"type": "json_object"}
