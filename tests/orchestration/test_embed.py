"""Embeddings (issue 25, part 3): orc.embed through the real openai SDK against the simulated
provider's /v1/embeddings, the offline model (llama.cpp's embedding mode), batching within
the model's concurrency limit, usage, cost, budgets and run records."""

from __future__ import annotations

import time

import numpy as np
import pytest
from helpers import PRICE_IN, sim_models, with_model_id

import mmo_magic as mmo
from mmo_magic.core.catalogue import builtin_embedding_models, builtin_models
from mmo_magic.core.errors import BudgetExceededError, InvalidRequestError, ProviderError
from mmo_magic.providers.embedded import missing_reason

TEXTS = ["the cat sat on the mat", "a cat sat on a mat", "quantum fields in curved spacetime"]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_vectors_usage_and_cost_from_an_openai_wire(orc, sim):
    e = orc.embed(TEXTS, model="oa")
    assert isinstance(e.vectors, np.ndarray) and e.vectors.shape == (3, 64)
    assert e.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(e.vectors, axis=1), 1, atol=1e-5)
    assert cosine(e[0], e[1]) > cosine(e[0], e[2])  # the sim's vectors share words
    assert e.input_tokens == sum(len(t.split()) for t in TEXTS) and not e.tokens_estimated
    assert e.cost == pytest.approx(e.input_tokens * PRICE_IN / 1000)
    sent = sim.last_request()
    assert sent is not None and sent["path"] == "/v1/embeddings"
    assert sent["body"] == {"model": "sim-fast", "input": TEXTS, "encoding_format": "float"}
    assert np.asarray(e).shape == (3, 64) and len(e) == 3


def test_a_lone_string_is_one_text(orc, sim):
    e = orc.embed("just one text", model="lo")  # an OpenAI-compatible local server
    assert e.vectors.shape == (1, 64)
    assert sim.last_request()["body"]["input"] == ["just one text"]  # type: ignore[index]


def test_the_sim_serves_both_shapes_to_the_openai_sdk(oa):
    one = oa.embeddings.create(model="sim-fast", input="hello there")
    many = oa.embeddings.create(model="sim-fast", input=["hello there", "general kenobi"],
                                dimensions=16)  # fmt: skip
    assert len(one.data) == 1 and len(one.data[0].embedding) == 64  # the SDK asked for base64
    assert [len(d.embedding) for d in many.data] == [16, 16]
    assert many.usage.prompt_tokens == 4


def test_every_batch_is_a_run_record(orc, sim):
    e = orc.embed([f"text number {i}" for i in range(5)], model="oa", batch_size=2)
    assert e.batches == 3 and sim.request_count() == 3 and len(e.run_ids) == 3
    df = orc.runs.to_dataframe()
    rows = df[df["kind"] == "embed"]
    assert len(rows) == 3 and set(rows["run_id"]) == set(e.run_ids)
    assert rows["status"].eq("ok").all() and rows["input_tokens"].sum() == 15
    assert rows["cost"].sum() == pytest.approx(e.cost)
    assert rows["group_id"].nunique() == 1 and rows["output_tokens"].eq(0).all()


def test_batches_run_at_once_within_the_models_concurrency(sim, keys):
    slow = sim_models(sim)[0].replace(model_id="sim-fast?latency_ms=200", max_concurrency=2)
    with mmo.Orchestrator([slow], runlog=":memory:", cache=False) as orc:
        orc.embed("warm up", model="oa")
        e = orc.embed([f"text {i}" for i in range(6)], model="oa", batch_size=1)
        records = orc.runs.records(group_id=e.group_id)
    assert e.batches == 6 and len(records) == 6
    # Two in flight at once, never three (each request holds the model for 200 ms):
    # counted from the requests' own intervals, so a slow machine can't change it.
    spans = [(r.started_at.timestamp(), r.started_at.timestamp() + r.latency_ms / 1000)
             for r in records]  # fmt: skip
    in_flight = [sum(a <= start < b for a, b in spans) for start, _ in spans]
    assert max(in_flight) == 2


def test_requests_keep_to_the_models_rate_limit(sim, keys):
    limited = sim_models(sim)[0].replace(requests_per_minute=600)  # one request per 0.1 s
    with mmo.Orchestrator([limited], runlog=":memory:", cache=False) as orc:
        orc.embed("warm up", model="oa")
        time.sleep(0.2)  # the warm-up's turn is long over: the next request may go at once
        started = time.perf_counter()
        orc.embed([f"text {i}" for i in range(6)], model="oa", batch_size=1)
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.48  # six requests 0.1 s apart: the last starts 0.5 s after the first


def test_a_failed_batch_fails_the_call_and_is_recorded(orc, sim):
    failing = with_model_id(orc, "oa", "sim-fast?fail=500")
    with pytest.raises(ProviderError, match=r"500|server had an error"):
        orc.embed(TEXTS, model=failing)
    row = orc.runs.to_dataframe().iloc[-1]
    assert row["kind"] == "embed" and row["status"] == "error"


def test_the_budget_is_checked_before_sending(sim, keys):
    with (
        mmo.Orchestrator(sim_models(sim), runlog=":memory:", cache=False, budget=1e-9) as orc,
        pytest.raises(BudgetExceededError),
    ):
        orc.embed(TEXTS, model="oa")
    assert sim.request_count() == 0


def test_models_without_embeddings_refuse_by_name(orc, sim):
    with pytest.raises(InvalidRequestError, match=r"'an' .*has no embeddings"):
        orc.embed(TEXTS, model="an")
    with mmo.Orchestrator(builtin_models(), runlog=":memory:", cache=False) as builtin:
        with pytest.raises(InvalidRequestError, match="'gpt-4o-mini' is a chat model"):
            builtin.embed(TEXTS, model="gpt-4o-mini")
        with pytest.raises(mmo.UnknownModelError):
            builtin.embed(TEXTS, model="no-such-embedder")
        refused = builtin.runs.to_dataframe()
        assert list(refused["kind"]) == ["embed", "embed"]  # refused calls are recorded too
        assert list(refused["error_type"]) == ["InvalidRequestError", "UnknownModelError"]
    assert sim.request_count() == 0


def test_an_embedding_model_does_not_chat(sim, keys):
    embedder = sim_models(sim)[0].replace(name="embedder", embedding=True)
    with mmo.Orchestrator([embedder], runlog=":memory:", cache=False) as orc:
        with pytest.raises(InvalidRequestError, match="is an embedding model"):
            orc.complete("hi", model="embedder")
        assert orc.embed("hi", model="embedder").vectors.shape == (1, 64)


def test_bad_texts_are_refused():
    with mmo.Orchestrator(builtin_models(), runlog=":memory:", cache=False) as orc:
        for bad in ([], [""], [1], None):
            with pytest.raises(InvalidRequestError):
                orc.embed(bad, model="text-embedding-3-small")  # type: ignore[arg-type]


def test_the_catalogue_prices_openais_embedding_models():
    models = {m.name: m for m in builtin_embedding_models()}
    assert models["text-embedding-3-small"].cost_per_1k_input == pytest.approx(0.02 / 1000)
    assert models["text-embedding-3-large"].cost_per_1k_input == pytest.approx(0.13 / 1000)
    assert all(m.embedding for m in models.values())
    assert not any(m.embedding for m in builtin_models())  # no router ever picks one to chat


@pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))
def test_the_offline_model_embeds(sim):
    with mmo.Orchestrator(builtin_models(), runlog=":memory:", cache=False) as orc:
        e = orc.embed(TEXTS)  # no OpenAI key: the default is the offline model
        assert e.model == "smollm2-embed" and e.provider == "embedded"
        assert e.vectors.shape == (3, 576)
        assert np.allclose(np.linalg.norm(e.vectors, axis=1), 1, atol=1e-4)
        assert cosine(e[0], e[1]) > cosine(e[0], e[2])
        assert e.cost == 0.0 and e.input_tokens is not None and not e.tokens_estimated
        again = orc.embed(TEXTS[0], model="smollm2-embed")
        assert np.allclose(again[0], e[0], atol=1e-4)  # the same text, the same vector
    assert sim.request_count() == 0
