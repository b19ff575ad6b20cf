"""What mmo_magic costs on top of llama-cpp-python for the embedded model.

    python benchmarks/embedded.py [--rounds 5] [--max-tokens 64]

All paths run the same GGUF file (SmolLM2-135M-Instruct) with the same
settings in one process:

- llama-cpp-python directly, ``Llama.create_chat_completion(stream=True)``,
  on a model of its own, reusing the previous call's prompt prefix as it does
  by default;
- the same with ``Llama.reset()`` before each call: a clean context, which is
  what mmo_magic runs (so that an answer never depends on the call before),
  on the model mmo_magic loaded;
- mmo_magic's ``Orchestrator.complete`` (response cache off, run log in memory).

Each round sends the same prompts through every path, the paths taking turns
call by call, at temperature 0. Output tokens per prompt are llama.cpp's own usage count for a clean
context, and the clean-context paths must reproduce that text exactly; if the
prefix-reusing path answers differently (its answers may differ: that is why
mmo_magic resets), its tokens are counted by tokenizing its answer, marked *.
After one warm-up round the table shows the median over rounds of tokens/s
(output tokens over wall time), and the medians of ms per call and of time to
first token (for mmo_magic, the ttft_ms it records for the call).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import Check, save

import mmo_magic as mmo
from mmo_magic.providers import embedded

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in two sentences what a neural network is.",
    "List three tips for writing clear code.",
]

PLAIN = "llama-cpp-python, prefix reuse"
# One call: (text, seconds to first token, seconds in all)
Call = Callable[[str], tuple[str, float, float]]


def direct_call(llama: Any, max_tokens: int, *, reset: bool) -> Call:
    def call(prompt: str) -> tuple[str, float, float]:
        start = time.perf_counter()
        if reset:
            llama.reset()
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
    ours = asyncio.run(embedded.EmbeddedClient(config).load())
    load_mmo = time.perf_counter() - start
    start = time.perf_counter()
    settings = {"n_threads": ours.n_threads, "n_threads_batch": ours.n_threads_batch}
    # With the same loading settings as mmo_magic (weight repacking off: see load_llama).
    plain: Any = embedded.load_llama(
        llama_cpp.Llama,
        model_path=str(path),
        n_ctx=ours.n_ctx(),
        seed=embedded.SEED,
        verbose=False,
        **settings,
    )
    load_direct = time.perf_counter() - start
    # The clean-context path runs mmo_magic's own loaded model, so that the two differ
    # only in mmo_magic's machinery (separate copies of one model measured a few %
    # apart). Safe from this thread: calls never overlap, the paths take turns.
    fresh = ours

    # The reference answer and its output token count (llama.cpp's) for a clean context.
    expected: dict[str, tuple[str, int]] = {}
    for prompt in PROMPTS:
        fresh.reset()
        out = fresh.create_chat_completion(
            messages=[{"role": "user", "content": prompt}],
            max_tokens=args.max_tokens,
            temperature=0.0,
        )
        expected[prompt] = (
            out["choices"][0]["message"]["content"],
            out["usage"]["completion_tokens"],
        )

    def output_tokens(name: str, prompt: str, text: str) -> int:
        reference, tokens = expected[prompt]
        if text == reference:
            return tokens
        if name != PLAIN:
            sys.exit(f"{name} did not reproduce the clean-context answer: {text!r}")
        retokenized.add(name)
        return len(plain.tokenize(text.encode(), add_bos=False, special=True))

    retokenized: set[str] = set()
    with mmo.Orchestrator([config], runlog=":memory:", cache=False) as orc:
        paths = {
            PLAIN: direct_call(plain, args.max_tokens, reset=False),
            "llama-cpp-python, clean context": direct_call(fresh, args.max_tokens, reset=True),
            "mmo_magic Orchestrator.complete": mmo_call(orc, config.name, args.max_tokens),
        }
        rates: dict[str, list[float]] = {name: [] for name in paths}
        per_call: dict[str, list[float]] = {name: [] for name in paths}
        ttfts: dict[str, list[float]] = {name: [] for name in paths}
        names = list(paths)
        for round_ in range(args.rounds + 1):
            elapsed = dict.fromkeys(names, 0.0)
            tokens = dict.fromkeys(names, 0)
            for i, prompt in enumerate(PROMPTS):
                # Paths take turns call by call, in rotating order, so that the
                # machine's ups and downs fall on all of them alike.
                for name in names[i % 3 :] + names[: i % 3]:
                    text, ttft, seconds = paths[name](prompt)
                    tokens[name] += output_tokens(name, prompt, text)
                    elapsed[name] += seconds
                    if round_:  # round 0 warms up
                        per_call[name].append(seconds * 1000)
                        ttfts[name].append(ttft * 1000)
            if round_:
                for name in names:
                    rates[name].append(tokens[name] / elapsed[name])
    plain.close()

    total = sum(n for _, n in expected.values())
    print(
        f"SmolLM2-135M-Instruct Q4_1, n_threads={ours.n_threads}, {len(PROMPTS)} prompts x "
        f"{args.rounds} rounds, max_tokens={args.max_tokens}, {total} output tokens a round"
    )
    print(f"model load: llama-cpp-python {load_direct:.2f} s, mmo_magic {load_mmo:.2f} s")
    print(f"{'path':<36}{'tokens/s':>10}{'ms/call':>10}{'ttft ms':>10}")
    medians = {}
    for name in paths:
        medians[name] = statistics.median(rates[name])
        mark = "*" if name in retokenized else ""
        print(
            f"{name + mark:<36}{medians[name]:>10.1f}{statistics.median(per_call[name]):>10.1f}"
            f"{statistics.median(ttfts[name]):>10.1f}"
        )
    plain_rate, fresh_rate, mmo_rate = medians.values()
    print(
        f"mmo_magic overhead in tokens/s: {(fresh_rate - mmo_rate) / fresh_rate * 100:+.1f}% "
        f"vs the same clean-context work, {(plain_rate - mmo_rate) / plain_rate * 100:+.1f}% "
        "vs plain llama-cpp-python"
    )
    if retokenized:
        print("* answered differently from the clean context; tokens counted by tokenizing")
    overhead = (fresh_rate - mmo_rate) / fresh_rate * 100
    checks = [
        Check("embedded: tokens/s through mmo_magic", mmo_rate, "tokens/s", "", None,
              f"llama-cpp-python alone {fresh_rate:.1f} on the same clean-context work"),
        Check("embedded: mmo_magic's cost in tokens/s", overhead, "%", "", None,
              f"{(plain_rate - mmo_rate) / plain_rate * 100:+.1f}% vs reusing the prompt prefix"),
    ]  # fmt: skip
    rows = [
        {
            "path": name,
            "tokens_per_s": medians[name],
            "ms_per_call": statistics.median(per_call[name]),
            "ttft_ms": statistics.median(ttfts[name]),
        }
        for name in paths
    ]
    save("embedded", vars(args), rows, checks)


if __name__ == "__main__":
    main()
