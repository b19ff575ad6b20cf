"""What mmo_magic costs on top of llama-cpp-python for the embedded model.

    python benchmarks/embedded.py [--rounds 5] [--max-tokens 64]

Both paths run the same GGUF file (SmolLM2-135M-Instruct) with the same
settings, each on its own loaded model, in one process: mmo_magic through
``Orchestrator.complete`` (response cache off, run log in memory), and
llama-cpp-python directly with ``Llama.create_chat_completion(stream=True)``.
Each round sends the same prompts to both, alternating, at temperature 0
(greedy, so both produce the same tokens; checked). Output token counts come
from llama.cpp's own usage report for each prompt. After one warm-up round
the table shows the median over rounds of tokens/s (output tokens over wall
time), ms per call, and the median time to first token.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import mmo_magic as mmo
from mmo_magic.clients import embedded

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in two sentences what a neural network is.",
    "List three tips for writing clear code.",
]

# One call: (text, seconds to first token, seconds in all)
Call = Callable[[str], tuple[str, float, float]]


def direct_call(llama: Any, max_tokens: int) -> Call:
    def call(prompt: str) -> tuple[str, float, float]:
        start = time.perf_counter()
        first = 0.0
        parts: list[str] = []
        for chunk in llama.create_chat_completion(
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0.0,
            stream=True,
        ):
            if text := chunk["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter()
                parts.append(text)
        end = time.perf_counter()
        return "".join(parts), first - start, end - start

    return call


def mmo_call(orc: mmo.Orchestrator, name: str, max_tokens: int) -> Call:
    def call(prompt: str) -> tuple[str, float, float]:
        start = time.perf_counter()
        r = orc.complete(prompt, model=name, max_tokens=max_tokens, temperature=0.0)
        end = time.perf_counter()
        if not r.ok:
            raise SystemExit(f"mmo_magic call failed: {r.error}")
        return r.content, (r.ttft_ms or 0.0) / 1000, end - start

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    if (reason := embedded.missing_reason()) is not None:
        sys.exit(reason)
    import llama_cpp

    path = embedded.model_path()
    config = mmo.ModelConfig(
        provider="embedded",
        model_id="SmolLM2-135M-Instruct",
        name="smollm2-bench",
        temperature=0.0,
        max_tokens=args.max_tokens,
        cost_per_1k_input=0.0,
        cost_per_1k_output=0.0,
    )

    start = time.perf_counter()
    direct = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=embedded.N_CTX,
        n_threads=embedded._threads(),
        seed=embedded.SEED,
        verbose=False,
    )
    load_direct = time.perf_counter() - start
    start = time.perf_counter()
    asyncio.run(embedded.EmbeddedClient(config).load())
    load_mmo = time.perf_counter() - start

    # Output tokens per prompt, as llama.cpp itself counts them.
    expected: dict[str, tuple[str, int]] = {}
    for prompt in PROMPTS:
        out = direct.create_chat_completion(
            messages=[{"role": "user", "content": prompt}],
            max_tokens=args.max_tokens,
            temperature=0.0,
        )
        expected[prompt] = (
            out["choices"][0]["message"]["content"],
            out["usage"]["completion_tokens"],
        )
    tokens_per_round = sum(n for _, n in expected.values())

    with mmo.Orchestrator([config], runlog=":memory:", cache=False) as orc:
        paths = {
            "llama-cpp-python direct": direct_call(direct, args.max_tokens),
            "mmo_magic Orchestrator.complete": mmo_call(orc, config.name, args.max_tokens),
        }
        rates: dict[str, list[float]] = {name: [] for name in paths}
        per_call: dict[str, list[float]] = {name: [] for name in paths}
        ttfts: dict[str, list[float]] = {name: [] for name in paths}
        for round_ in range(args.rounds + 1):
            for name, call in paths.items():
                elapsed = 0.0
                for prompt in PROMPTS:
                    text, ttft, seconds = call(prompt)
                    if text != expected[prompt][0]:
                        sys.exit(f"{name} answered differently at temperature 0: {text!r}")
                    elapsed += seconds
                    if round_:  # round 0 warms up
                        per_call[name].append(seconds * 1000)
                        ttfts[name].append(ttft * 1000)
                if round_:
                    rates[name].append(tokens_per_round / elapsed)

    print(
        f"SmolLM2-135M-Instruct Q4_1, n_threads={embedded._threads()}, "
        f"{len(PROMPTS)} prompts x {args.rounds} rounds, max_tokens={args.max_tokens}, "
        f"{tokens_per_round} output tokens per round"
    )
    print(f"model load: direct {load_direct * 1000:.0f} ms, mmo_magic {load_mmo * 1000:.0f} ms")
    print(f"{'path':<34}{'tokens/s':>10}{'ms/call':>10}{'ttft ms':>10}")
    medians = {}
    for name in paths:
        medians[name] = statistics.median(rates[name])
        print(
            f"{name:<34}{medians[name]:>10.1f}{statistics.median(per_call[name]):>10.1f}"
            f"{statistics.median(ttfts[name]):>10.1f}"
        )
    base, ours = medians.values()
    print(f"mmo_magic overhead: {(base - ours) / base * 100:+.1f}% tokens/s")


if __name__ == "__main__":
    main()
