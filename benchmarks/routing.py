"""How fast routers decide: decisions per second over the shipped labelled prompts.

    python benchmarks/routing.py [--rounds 7]

Each router routes every prompt of mmo_magic/data/routing_prompts.csv once per
round, after a warm-up pass (imports done, tokenizer vocabulary loaded). The
token-count cache is emptied before every round, so each decision pays for
counting as it would for a prompt never seen before; the last column repeats
the run with counts cached (the same prompts again). No model is called.
Timings use time.perf_counter; the table shows decisions/s for the median
round and the median and 90th-percentile time of one decision. For scale, the
last rows time the classifiers alone (the learned task classifier with its
cues, and the cues alone) and one count_message_tokens call. The task router's
target (issue 23) is a decision under 5 ms at p50.

    python benchmarks/routing.py --accuracy

also runs the cross-source evaluation of the task router on
mmo_magic/data/task_prompts.csv: for each source, train on the others and
classify that source's prompts of the eight benchmark categories (coding, math,
reasoning, extraction, writing, roleplay, stem, humanities); the learned router
against the cues alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

from _common import Check, print_checks, save

from mmo_magic import routing
from mmo_magic.core import pricing
from mmo_magic.core.catalogue import builtin_models
from mmo_magic.core.completion import CompletionRequest, Message
from mmo_magic.core.models import Catalogue
from mmo_magic.core.pricing import count_message_tokens
from mmo_magic.routing.evaluation import ROUND_TWO_SOURCES


def measure(
    action: Callable[[CompletionRequest], object],
    requests: Sequence[CompletionRequest],
    rounds: int,
    *,
    cached: bool = False,
) -> tuple[float, float, float]:
    """(decisions/s of the median round, median µs per decision, p90 µs per decision)."""
    for r in requests:  # warm-up
        action(r)
    per_round: list[float] = []
    each: list[float] = []
    clock = time.perf_counter
    for _ in range(rounds):
        if not cached:
            pricing._TOKEN_CACHE.clear()  # count tokens afresh, as for new prompts
        round_start = clock()
        for r in requests:
            start = clock()
            action(r)
            each.append(clock() - start)
        per_round.append(clock() - round_start)
    each.sort()
    rate = len(requests) / statistics.median(per_round)
    return rate, each[len(each) // 2] * 1e6, each[int(len(each) * 0.9)] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--accuracy", action="store_true", help="cross-source task accuracy")
    args = parser.parse_args()

    prompts = list(routing.load_routing_prompts()["prompt"])
    requests = [CompletionRequest(messages=(Message("user", p),)) for p in prompts]
    catalogue = Catalogue.of(builtin_models())
    available = len(catalogue.available())
    chars = statistics.median(len(p) for p in prompts)
    print(
        f"{len(prompts)} prompts (median {chars:.0f} characters), {args.rounds} rounds; "
        f"{available} of {len(catalogue)} catalogue models available\n"
    )

    rules, task = routing.RulesRouter(), routing.TaskRouter()
    cues = routing.TaskRouter(learned=False)
    complexity, cost = routing.ComplexityRouter(), routing.CostOptimizedRouter()
    cases: list[tuple[str, Callable[[CompletionRequest], object]]] = [
        ("rules (seed rules)", lambda r: rules.route(r, catalogue)),
        ("complexity", lambda r: complexity.route(r, catalogue)),
        ("task", lambda r: task.route(r, catalogue)),
        ("cost", lambda r: cost.route(r, catalogue)),
        ("  TaskRouter.detect only", lambda r: task.detect(r.prompt_text)),
        ("  TaskRouter.detect, cues only", lambda r: cues.detect(r.prompt_text)),
        ("  ComplexityRouter.assess only", lambda r: complexity.assess(r.prompt_text)),
        (
            "  one count_message_tokens",
            lambda r: count_message_tokens([r.prompt_text], "gpt-4o"),
        ),
    ]
    header = (
        f"{'router':32} {'decisions/s':>12} {'µs/decision':>12} {'p90 µs':>9}"
        f" {'decisions/s, tokens cached':>27}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for name, action in cases:
        rate, median_us, p90_us = measure(action, requests, args.rounds)
        cached_rate, _, _ = measure(action, requests, args.rounds, cached=True)
        print(f"{name:32} {rate:12,.0f} {median_us:12.1f} {p90_us:9.1f} {cached_rate:27,.0f}")
        rows.append(
            {
                "router": name.strip(),
                "decisions_per_s": rate,
                "median_us": median_us,
                "p90_us": p90_us,
                "decisions_per_s_tokens_cached": cached_rate,
            }
        )
    checks = [
        Check(
            f"routing: {r['router']}",
            r["decisions_per_s"],
            "decisions/s",
            "",
            None,
            f"{r['median_us']:.0f} µs each",
        )
        for r in rows[:4]
    ]
    task_row = rows[2]
    checks.append(
        Check(
            "routing: task decision p50",
            task_row["median_us"] / 1000,
            "ms",
            "< 5 ms",
            task_row["median_us"] < 5000,
            "learned classifier + cues",
        )
    )
    if args.accuracy:
        rows_accuracy = task_accuracy()
        for r in rows_accuracy:
            rows.append(r)
        learned = [r for r in rows_accuracy if r["router"] == "task accuracy: learned + cues"]
        checks.append(
            Check(
                "routing: task accuracy across sources",
                learned[0]["accuracy"] * 100,
                "%",
                "",
                None,
                "8 categories, each source held out",
            )
        )
    print_checks(checks)
    save("routing", vars(args), rows, checks)


def task_accuracy() -> list[dict[str, object]]:
    """Cross-source accuracy of the task router, learned + cues and cues alone."""
    from mmo_magic.routing.evaluation import cross_source_router_evaluation
    from mmo_magic.routing.task_model import mean_accuracy

    print("\ntask accuracy, each source held out (8 benchmark categories)")
    learned = cross_source_router_evaluation()
    alone = {s.source: s for s in cross_source_router_evaluation(learned=False)}
    print(f"{'held-out source':26} {'prompts':>8} {'learned + cues':>15} {'cues alone':>11}")
    for s in learned:
        print(f"{s.source:26} {s.prompts:8} {s.accuracy:15.1%} {alone[s.source].accuracy:11.1%}")
    both = mean_accuracy(learned), mean_accuracy(list(alone.values()))
    total = sum(s.prompts for s in learned)
    print(f"{'all (prompt-weighted)':26} {total:8} {both[0]:15.1%} {both[1]:11.1%}")
    # Like for like with earlier rounds: the sources round two was measured on.
    same = [s for s in learned if s.source in ROUND_TWO_SOURCES]
    same_cues = [alone[s.source] for s in same]
    print(
        f"{'round two sources (12)':26} {sum(s.prompts for s in same):8}"
        f" {mean_accuracy(same):15.1%} {mean_accuracy(same_cues):11.1%}"
    )
    out: list[dict[str, object]] = [
        {
            "router": "task accuracy: learned + cues",
            "source": s.source,
            "prompts": s.prompts,
            "accuracy": s.accuracy,
        }
        for s in learned
    ]
    out.insert(0, {"router": "task accuracy: learned + cues", "source": "all", "accuracy": both[0]})
    out.append({"router": "task accuracy: cues alone", "source": "all", "accuracy": both[1]})
    out.append(
        {
            "router": "task accuracy: learned + cues",
            "source": "round two's 12 sources",
            "accuracy": mean_accuracy(same),
        }
    )
    return out


if __name__ == "__main__":
    main()
