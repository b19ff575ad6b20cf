"""SIGHUP: ``mmo-serve`` reads its config again - what is served, new and changed models -
without dropping a stream under way."""

from __future__ import annotations

import json
import signal
import textwrap
import time

import httpx
from helpers import mmo_serve, sse_data


def config_text(sim_url: str, served: list[str], extra: str = "") -> str:
    return (
        textwrap.dedent(f"""
        default_model = "slow"
        [server]
        models = {json.dumps(served)}
        [models.slow]
        provider = "local"
        model_id = "sim-fast?ttft_ms=100&tps=10&tokens=12"
        base_url = "{sim_url}"
        [models.other]
        provider = "local"
        model_id = "sim-fast"
        base_url = "{sim_url}"
    """)
        + extra
    )


def test_sighup_reloads_models_without_dropping_a_stream(sim_server, tmp_path):
    config = tmp_path / "mmo.toml"
    config.write_text(config_text(sim_server.openai_base_url, ["slow"]))
    runlog = tmp_path / "runs.sqlite3"
    with (
        mmo_serve(config, runlog) as (process, url),
        httpx.Client(base_url=url, timeout=30) as http,
    ):

        def listed() -> set[str]:
            return {m["id"] for m in http.get("/v1/models").json()["data"]}

        assert listed() == {"slow"}
        body = {"model": "slow", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            assert '"role":"assistant"' in next(lines)  # under way
            new_model = textwrap.dedent(f"""
                [models.fresh]
                provider = "local"
                model_id = "sim-fast?reply=fresh+answer"
                base_url = "{sim_server.openai_base_url}"
            """)
            config.write_text(
                config_text(sim_server.openai_base_url, ["slow", "other", "fresh"], new_model)
            )
            process.send_signal(signal.SIGHUP)
            rest = sse_data(list(lines))
        assert rest[-1] == "[DONE]"
        words = "".join(json.loads(d)["choices"][0]["delta"].get("content", "") for d in rest[:-1])
        assert len(words.split()) == 12  # the stream was not cut
        deadline = time.monotonic() + 10
        while listed() != {"slow", "other", "fresh"} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listed() == {"slow", "other", "fresh"}
        chat = {"model": "fresh", "messages": [{"role": "user", "content": "hi"}]}
        answer = http.post("/v1/chat/completions", json=chat).json()
        assert answer["choices"][0]["message"]["content"] == "fresh answer"
        # A config that does not load changes nothing; the server keeps serving.
        config.write_text("[server]\nmodels = 5\n")
        process.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert process.poll() is None and listed() == {"slow", "other", "fresh"}
