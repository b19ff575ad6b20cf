"""Routers: choose a model for a prompt without calling any model, and say why.

Four routers share one interface, ``Router.route(request, catalogue) -> RouteDecision``:

- ``TaskRouter`` ("task") classifies what the prompt asks for (coding, math,
  translation...) from weighted cues and sends each task to a preference list.
- ``ComplexityRouter`` ("complexity") scores how demanding the prompt is and
  picks the cheapest model of a tier that can handle it.
- ``ModelRouter`` ("rules") applies user ``RoutingRule``s in priority order.
- ``CostOptimizedRouter`` ("cost") counts tokens and picks the cheapest model
  of at least a given tier, under an optional cap per call.

Routers only choose *available* models (``ModelConfig.available``: the key
is set). When a preferred model is unavailable they try the next one and the
reason says so, naming the model and what is missing. Only when no model at
all is available do they raise ``ConfigError``.

Costs in decisions are estimates: input tokens are counted with
``mmo_magic.tokens`` (exact for OpenAI models, an estimate elsewhere) and the
output length is guessed by ``guess_output_tokens``.

Fall-through order: a router's own candidates first (a task's or rule's
preference list, the cheapest model of the needed tier), then ``default``
(the orchestrator passes its default model), then the cheapest available
model. Simulated (sim-*) models are chosen only when no real model qualifies,
so routing works offline without ever preferring a simulation to a real model.

Routing must stay cheap enough to run before every call: the classifiers are
a word lookup plus regular expressions indexed by the words and characters
they need (a prompt visits only the few that can match), and token counts
are cached per text and vocabulary.
``evaluate_router`` measures a classifier against labelled prompts
(``load_routing_prompts`` ships a labelled set); it imports pandas lazily.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..core.completion import CompletionRequest, Message
from ..core.errors import BudgetExceededError, ConfigError, NoModelAvailableError, UnknownModelError
from ..core.models import Catalogue, ModelConfig
from ..core.pricing import count_message_tokens, encoding_name_for

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COMPLEXITY_LEVELS",
    "ROUTERS",
    "TASKS",
    "TIER_FOR_LEVEL",
    "ComplexityAssessment",
    "ComplexityRouter",
    "CostOptimizedRouter",
    "ModelRouter",
    "RouteDecision",
    "Router",
    "RouterEvaluation",
    "RoutingRule",
    "TaskGuess",
    "TaskRouter",
    "estimate_cost",
    "evaluate_router",
    "guess_output_tokens",
    "input_tokens",
    "load_routing_prompts",
    "make_router",
    "seed_rules",
]

TASKS = (
    "coding",
    "math",
    "reasoning",
    "extraction",
    "writing",
    "roleplay",
    "stem",
    "humanities",
    "translation",
    "summarization",
    "conversation",
)
COMPLEXITY_LEVELS = ("simple", "medium", "complex")
ROUTERS = ("rules", "complexity", "task", "cost")
TIER_FOR_LEVEL = {"simple": 1, "medium": 2, "complex": 3}


# -- decisions ----------------------------------------------------------------


@dataclass(frozen=True)
class RouteDecision:
    """Which model a router chose for one request, and why.

    ``rule`` names the branch that fired ("task:coding", "default"...);
    ``reason`` is one line for people; ``estimated_cost`` is USD for the
    input tokens plus the guessed output, None when the model is unpriced.
    """

    model: str
    router: str
    rule: str
    reason: str
    estimated_cost: float | None
    label: str | None = None
    input_tokens: int | None = None

    def __str__(self) -> str:
        return f"{self.model} ← {self.reason}"

    def _repr_markdown_(self) -> str:
        cost = "n/a" if self.estimated_cost is None else f"~${self.estimated_cost:.6f}"
        return (
            f"**{self.model}** · router `{self.router}` · rule `{self.rule}` · est. {cost}\n\n"
            f"{self.reason}"
        )


# -- tokens and cost: the one place routers estimate them ------------------------

_TOKEN_CACHE: dict[tuple[str, tuple[str, ...]], int] = {}
_TOKEN_CACHE_MAX = 4096


def input_tokens(request: CompletionRequest, model: ModelConfig | None = None) -> int:
    """Input tokens of ``request`` for ``model`` (o200k_base when no model is given).

    Exact for OpenAI models, an estimate for others (see ``mmo_magic.tokens``).
    Counting is the slow part of routing, so counts are cached; the key is
    the vocabulary, not the model, so models sharing one share the entry.
    """
    model_id = model.model_id if model is not None else ""
    contents = tuple(m.content for m in request.messages)
    key = (encoding_name_for(model_id), contents)
    count = _TOKEN_CACHE.get(key)
    if count is None:
        count = count_message_tokens(contents, model_id)
        if len(_TOKEN_CACHE) >= _TOKEN_CACHE_MAX:
            _TOKEN_CACHE.clear()  # a crude bound; routing a new batch refills it cheaply
        _TOKEN_CACHE[key] = count
    return count


# Typical answer lengths in tokens by task or complexity level: rough priors from
# everyday chat use, good enough to rank models by cost (not to bill anyone).
_TYPICAL_OUTPUT = {
    "conversation": 150,
    "extraction": 200,
    "roleplay": 300,
    "writing": 600,
    "coding": 600,
    "math": 400,
    "reasoning": 450,
    "stem": 400,
    "humanities": 450,
    "simple": 150,
    "medium": 400,
    "complex": 900,
}
_DEFAULT_OUTPUT = 300


def guess_output_tokens(
    request: CompletionRequest, model: ModelConfig, label: str | None = None
) -> int:
    """How many tokens the answer will probably have: the estimate costs are based on.

    Translations are about as long as their source and summaries about a
    quarter of it; other tasks (and complexity levels) use a typical length,
    300 tokens when unknown. The guess never exceeds the request's
    ``max_tokens`` or the model's.
    """
    if label in ("translation", "summarization"):
        prompt_tokens = max(1, len(request.prompt_text) // 4)  # a cheap size: only a prior
        guess = prompt_tokens + 20 if label == "translation" else max(80, prompt_tokens // 4)
    else:
        guess = _TYPICAL_OUTPUT.get(label or "", _DEFAULT_OUTPUT)
    caps = [model.max_tokens]
    if request.max_tokens:
        caps.append(request.max_tokens)
    return max(1, min(guess, *caps))


def estimate_cost(
    model: ModelConfig, request: CompletionRequest, expected_output_tokens: int | None
) -> float | None:
    """USD for ``request``'s input tokens plus ``expected_output_tokens`` on ``model``.

    None when the model is unpriced; ``expected_output_tokens=None`` uses
    ``guess_output_tokens`` without a task.
    """
    if not model.priced:
        return None
    output = (
        expected_output_tokens
        if expected_output_tokens is not None
        else guess_output_tokens(request, model)
    )
    return model.cost(input_tokens(request, model), output)


def _usd(value: float | None) -> str:
    """Two significant digits, never scientific notation: ``$0.00041``."""
    if value is None:
        return "cost n/a"
    if value <= 0:
        return "$0"
    decimals = min(8, max(2, 1 - math.floor(math.log10(value))))
    return f"${value:.{decimals}f}"


# -- choosing among models ------------------------------------------------------


def _tier(model: ModelConfig) -> int:
    # A model without a tier is assumed small: it never meets a higher requirement by accident.
    return model.tier if model.tier is not None else 1


def _price_key(model: ModelConfig) -> tuple[bool, bool, float]:
    # Real models before simulated ones (a user with keys must never be routed to a
    # simulation just because it is priced low), priced before unpriced, then cheapest.
    price = (model.cost_per_1k_input or 0.0) + (model.cost_per_1k_output or 0.0)
    return (model.provider == "sim", not model.priced, price)


def _max_tokens_bound(request: CompletionRequest) -> int:
    # A token covers at least one UTF-8 byte and a character at most four bytes, so
    # 4 * characters bounds the count without counting.
    return 4 * sum(len(m.content) for m in request.messages) + 64


class _Trail:
    """What a router skipped on its way to a choice, for the reason line."""

    def __init__(self, request: CompletionRequest) -> None:
        self.request = request
        self.segments: list[str] = []
        self._fits: dict[str, str | None] = {}
        self._unavailable: dict[tuple[str, str | None, str | None], str | None] = {}
        self._bound = _max_tokens_bound(request)

    def fits(self, model: ModelConfig) -> str | None:
        """Why ``model`` can't take this request now, or None when it can."""
        if model.name in self._fits:
            return self._fits[model.name]
        # Models with the same provider, key variable and endpoint are available together;
        # asking once per group saves reading the environment for each of ~20 models.
        group = (model.provider, model.api_key_env, model.base_url)
        if group not in self._unavailable:
            self._unavailable[group] = model.unavailable_reason
        why = self._unavailable[group]
        if why is not None:
            why = f"unavailable ({why})"
        elif model.context_window and self._bound > model.context_window:
            needed = input_tokens(self.request, model)
            if needed > model.context_window:
                why = f"too small ({model.context_window:,}-token context < {needed:,} tokens)"
        self._fits[model.name] = why
        return why

    def pick(
        self, names: Sequence[str], catalogue: Catalogue, prefix: str = ""
    ) -> ModelConfig | None:
        """The first of ``names`` that can take the request; notes why others could not."""
        skipped: dict[str, list[str]] = {}
        for name in names:
            try:
                model = catalogue.resolve(name)
            except UnknownModelError:
                skipped.setdefault("not in the catalogue", []).append(name)
                continue
            why = self.fits(model)
            if why is None:
                self.note("", skipped)  # the list still produced a model: no prefix needed
                return model
            skipped.setdefault(why, []).append(model.name)
        self.note(prefix, skipped)
        return None

    def note(self, prefix: str, skipped: Mapping[str, list[str]]) -> None:
        if skipped:
            parts = [f"{', '.join(names)} {why}" for why, names in skipped.items()]
            self.segments.append(prefix + "; ".join(parts))

    def add(self, text: str) -> None:
        self.segments.append(text)

    def reason(self, head: str, model: str) -> str:
        """``head → model``, or the skips and "fell through to model" when there were any."""
        if not self.segments:
            return f"{head} → {model}"
        return f"{head}; {'; '.join(self.segments)}, fell through to {model}"


def _by_price(catalogue: Catalogue, min_tier: int = 1) -> list[ModelConfig]:
    """Models with tier >= ``min_tier``, cheapest first (ties keep catalogue order)."""
    return sorted((m for m in catalogue if _tier(m) >= min_tier), key=_price_key)


def _cheapest(catalogue: Catalogue, trail: _Trail, min_tier: int = 1) -> ModelConfig | None:
    """The cheapest model with tier >= ``min_tier`` that can take the request."""
    # Walk in price order and stop at the first fit: checking availability (the
    # environment) of every model would cost more than the rest of routing.
    return next((m for m in _by_price(catalogue, min_tier) if trail.fits(m) is None), None)


def _nothing_available(catalogue: Catalogue) -> NoModelAvailableError:
    missing = sorted({m.unavailable_reason for m in catalogue if m.unavailable_reason})
    detail = f" ({', '.join(missing)})" if missing else ""
    return NoModelAvailableError(
        f"No model is available to route to{detail}.",
        hint="Set a provider key (e.g. OPENAI_API_KEY) or add a local or sim model.",
    )


def _as_request(request: CompletionRequest | str) -> CompletionRequest:
    if isinstance(request, str):
        return CompletionRequest(messages=(Message("user", request),))
    return request


@functools.cache
def _builtin_catalogue() -> Catalogue:
    from ..core.catalogue import builtin_models

    return Catalogue.of(builtin_models())


# -- the interface --------------------------------------------------------------


class Router(ABC):
    """Chooses a model for a request from a catalogue, calling no model.

    ``classify`` returns the router's label for a prompt (task or complexity
    level) when it has one; ``classifies`` says whether it does.
    """

    name: ClassVar[str] = "router"
    classifies: ClassVar[bool] = False

    def __init__(self, default: str | None = None) -> None:
        self.default = default

    @abstractmethod
    def route(
        self, request: CompletionRequest | str, catalogue: Catalogue | None = None
    ) -> RouteDecision:
        """The model for ``request`` (a prompt string is accepted too).

        ``catalogue`` defaults to the built-in models.
        """

    def classify(self, prompt: str) -> str | None:
        return None

    def explain(self, prompt: str) -> tuple[str | None, str]:
        """The label for ``prompt`` and a one-line reason (used by ``evaluate_router``)."""
        return None, ""

    def _decide(
        self,
        request: CompletionRequest,
        model: ModelConfig,
        rule: str,
        reason: str,
        label: str | None,
        output_tokens: int | None = None,
    ) -> RouteDecision:
        if output_tokens is None:
            output_tokens = guess_output_tokens(request, model, label)
        tokens = input_tokens(request, model)
        return RouteDecision(
            model=model.name,
            router=self.name,
            rule=rule,
            reason=reason,
            estimated_cost=model.cost(tokens, output_tokens),
            label=label,
            input_tokens=tokens,
        )

    def _fall_back(
        self,
        request: CompletionRequest,
        catalogue: Catalogue,
        trail: _Trail,
        head: str,
        label: str | None,
        min_tier: int = 1,
    ) -> RouteDecision:
        """After the router's own candidates: the cheapest model of ``min_tier`` (when
        that is a real need, above 1), then ``default``, then the cheapest available."""
        model = _cheapest(catalogue, trail, min_tier) if min_tier > 1 else None
        if model is not None:
            trail.add(f"cheapest available with tier>={min_tier} is {model.name}")
            rule = f"cheapest-tier>={min_tier}"
            return self._decide(request, model, rule, trail.reason(head, model.name), label)
        if self.default is not None:
            chosen = trail.pick([self.default], catalogue, prefix="default ")
            if chosen is not None:
                reason = trail.reason(head, chosen.name)
                return self._decide(request, chosen, "default", reason, label)
        model = _cheapest(catalogue, trail)
        if model is None:
            raise _nothing_available(catalogue)
        trail.add(f"cheapest available model is {model.name}")
        return self._decide(request, model, "any-available", trail.reason(head, model.name), label)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(default={self.default!r})"


# -- task classification ----------------------------------------------------------


@dataclass(frozen=True)
class TaskGuess:
    """What ``TaskRouter.detect`` found: the task, how sure it is, and the evidence."""

    task: str
    confidence: float
    signals: tuple[str, ...]
    scores: Mapping[str, float]
    fallback: bool = False  # no task scored enough: conversation by default

    def describe(self) -> str:
        if self.fallback:
            return f"task {self.task} (fallback: no strong signal for any task)"
        evidence = ", ".join(self.signals[:4])
        return f"task {self.task} (confidence {self.confidence:.2f}: {evidence})"


@dataclass(frozen=True, slots=True)
class _Cue:
    task: str
    weight: float
    signal: str
    intent: bool  # an explicit ask ("translate ...") rather than a topic word


@dataclass(frozen=True, slots=True)
class _Pattern:
    regex: re.Pattern[str]
    effects: tuple[tuple[str, float], ...]
    signal: str
    intent: bool
    raw: bool  # matched against the original text (case matters), not the lowercased one
    min_count: int
    anchored: bool  # only matches at the start of the prompt: re.match, not re.search
    # Regexes are the slow part of classifying, so each pattern names what it cannot match
    # without: one of ``needs`` (words), one of ``chars``, one of ``subs`` (substrings),
    # non-ASCII text. Patterns are indexed by those words and characters, so a prompt only
    # visits the few whose gate is open (see _prompt_features and TaskRouter.detect).
    needs: frozenset[str]
    chars: frozenset[str]
    subs: tuple[str, ...]
    non_ascii: bool
    lines: bool  # matched at the start of each line, like code

    def hit(self, text: str, lowered: str, features: set[str], gated: bool = True) -> bool:
        """Whether the pattern matches; ``gated=False`` skips the shortcuts (for tests)."""
        if gated:
            if self.needs and self.needs.isdisjoint(features):
                return False
            if self.chars and self.chars.isdisjoint(features):
                return False
            if self.subs:
                for sub in self.subs:  # a plain loop: any() with a generator costs more here
                    if sub in lowered:
                        break
                else:
                    return False
            if self.non_ascii and _NON_ASCII not in features:
                return False
        subject = text if self.raw else lowered
        if self.lines:
            hits = sum(1 for line in subject.splitlines() if self.regex.match(line))
            return hits >= self.min_count
        if self.anchored:
            return self.regex.match(subject) is not None
        if self.min_count > 1:
            return len(self.regex.findall(subject)) >= self.min_count
        return self.regex.search(subject) is not None


_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NON_ASCII = "<non-ascii>"  # a feature of prompts with any non-ASCII character


def _prompt_features(text: str) -> tuple[str, list[str], set[str]]:
    """The lowercased text, its words, and its features: words, characters, non-ASCII."""
    lowered = text.lower()
    words = _WORD_RE.findall(lowered)
    features = set(words)
    features.update(lowered)
    if not text.isascii():
        features.add(_NON_ASCII)
    return lowered, words, features


_TOPIC_WORDS: dict[str, list[_Cue]] = {}
_TOPIC_PHRASES: dict[str, list[_Cue]] = {}
_PATTERNS: list[_Pattern] = []


def _topic(task: str, weight: float, terms: str) -> None:
    """Topic words for ``task``; '|' separates terms, a term of several words is a phrase."""
    for term in terms.split("|"):
        words = tuple(_WORD_RE.findall(term.strip().lower()))
        cue = _Cue(task, weight, f"'{term.strip()}'", intent=False)
        table = _TOPIC_WORDS if len(words) == 1 else _TOPIC_PHRASES
        table.setdefault(" ".join(words), []).append(cue)


def _cue(
    pattern: str,
    signal: str,
    *effects: tuple[str, float],
    intent: bool = True,
    raw: bool = False,
    min_count: int = 1,
    needs: str = "",
    chars: str = "",
    subs: tuple[str, ...] = (),
    non_ascii: bool = False,
    lines: bool = False,
) -> None:
    # Raw patterns look at lines of code (MULTILINE). The others see lowercased text (no
    # IGNORECASE: it makes matching about 3x slower) and anchor ^ at the prompt's start.
    flags = re.MULTILINE if raw else 0
    anchored = pattern.startswith("\\A") or (not raw and pattern.startswith("^"))
    compiled = re.compile(pattern, flags)
    _PATTERNS.append(
        _Pattern(
            compiled,
            effects,
            signal,
            intent,
            raw,
            min_count,
            anchored,
            frozenset(needs.split()),
            frozenset(chars),
            subs,
            non_ascii,
            lines,
        )
    )


# An optional polite or indirect opening before the verb that carries the request.
_LEAD = (
    r"^\W*(?:(?:hi|hey|hello|ok(?:ay)?|so|please)\W+)*"
    r"(?:(?:can|could|would|will) you\s+(?:please\s+)?|please\s+|i (?:need|want) you to\s+"
    r"|help me\s+|i'?d like you to\s+|now\s+)?"
)
_NATURAL_LANGUAGES = (
    r"english|french|spanish|german|italian|portuguese|japanese|chinese|mandarin|cantonese"
    r"|korean|russian|arabic|hindi|bengali|urdu|dutch|swedish|norwegian|danish|finnish|polish"
    r"|czech|turkish|greek|hebrew|latin|thai|vietnamese|indonesian|malay|swahili|ukrainian"
    r"|romanian|hungarian|persian|farsi|tagalog|catalan|welsh|irish|esperanto"
)
_PROGRAMMING_LANGUAGES = (
    r"python|javascript|typescript|java|kotlin|swift|rust|go|golang|ruby|php|perl|scala"
    r"|haskell|c\+\+|c#|c|sql|bash|powershell|lua|dart|elixir|julia|matlab|r"
)

# coding ---------------------------------------------------------------------------
_topic(
    "coding",
    2.0,
    "python|javascript|typescript|java|golang|rust|ruby|php|kotlin|sql|regex|regexp|bash|git"
    "|docker|dockerfile|kubernetes|api|apis|endpoint|json|yaml|html|css|react|django|flask"
    "|fastapi|express|node|nodejs|npm|pip|pandas|numpy|compiler|compile|runtime|segfault"
    "|traceback|stacktrace|refactor|refactoring|debugger|unit tests|pytest|async|await|gil"
    "|multiprocessing|threading|frontend|backend|cors|localhost|gunicorn|idiomatic|codebase"
    "|repo|repository|pointer|pointers|recursion|lambda|hashmap|linux|macos|sdk|webpack",
)
_topic(
    "coding",
    1.0,
    "code|coding|function|functions|method|class|variable|loop|array|arrays|string|strings"
    "|integer|boolean|script|query|queries|database|server|bug|bugs|debug|debugging|program"
    "|programming|developer|syntax|algorithm|compiles|exception|crash|crashes|cache|thread"
    "|threads|processes|binary search|loops|infinite loop|command line|terminal|commit"
    "|benchmark|component|promise|promises|re renders|rows|dataframe|unit|tests|library"
    "|install|parse|parser|distributed|consistency|consensus|raft|paxos|microservices"
    "|scalability|latency|throughput|load balancer|sharding|replication|system design"
    "|key value store",
)
_cue(r"```", "code fence", ("coding", 2.5), intent=False, raw=True, chars="`")
_cue(
    r"\s*(?:def |class \w+|import \w|from [\w.]+ import|function \w|const |let |var |fn \w"
    r"|pub fn|public |private |#include|package \w|SELECT |INSERT |CREATE TABLE|return\b)",
    "code line",
    ("coding", 2.0),
    intent=False,
    raw=True,
    lines=True,
    needs="def class import from function const let var fn pub public private include"
    " package select insert create return",
)
_cue(
    r"\s*(?:while|for|if|elif|else|try|except|with)\b.*:\s*$",
    "code block",
    ("coding", 2.0),
    intent=False,
    raw=True,
    lines=True,
    needs="while for if elif else try except with",
)
_cue(
    r"\s*[a-z_][\w.\[\]]*(?:\s*,\s*[a-z_]\w*)*\s*[-+*/]?=\s*\S",
    "assignment",
    ("coding", 2.0),
    intent=False,
    raw=True,
    lines=True,
    chars="=",
)
_cue(
    r".*[;{}]\s*$",
    "braces/semicolons",
    ("coding", 1.5),
    intent=False,
    raw=True,
    min_count=2,
    lines=True,
    chars=";{}",
)
_cue(r"\.\w+\([^()\n]*\)", "method call", ("coding", 1.5), intent=False, raw=True, chars="(")
_cue(
    r"Traceback \(most recent call last\)|\b[A-Z]\w*(?:Error|Exception)\b|Segmentation fault"
    r"|panicked at|NullPointer|undefined is not|stack trace",
    "error trace",
    ("coding", 3.0),
    intent=False,
    raw=True,
    subs=(
        "error",
        "exception",
        "traceback",
        "segmentation",
        "panicked",
        "nullpointer",
        "undefined is not",
        "stack trace",
    ),
)
_cue(
    r"\w\.(?:py|js|ts|tsx|jsx|java|cpp|cc|hpp|rs|go|rb|php|sh|ya?ml|toml|ipynb|cs|kt"
    r"|swift|log)\b",
    "file name",
    ("coding", 2.0),
    intent=False,
    needs="py js ts tsx jsx java cpp cc hpp rs go rb php sh yml yaml toml ipynb cs kt swift log",
)
_cue(
    r"==|!=|=>|\+=|&&|\|\||::|->",
    "code operators",
    ("coding", 1.5),
    intent=False,
    raw=True,
    chars="=&|:>",
    subs=("==", "!=", "=>", "+=", "&&", "||", "::", "->"),
)
_cue(
    r"\bO\([^)]{1,12}\)", "big-O", ("coding", 1.5), intent=False, raw=True, chars="(", subs=("o(",)
)
_cue(r"(?:^|\s)--?[a-z][\w-]+", "CLI flags", ("coding", 1.5), intent=False, min_count=2, chars="-")
_cue(r"\bc\+\+|\bc#|\bf#", "'C++/C#'", ("coding", 2.0), intent=False, chars="+#")
_cue(
    _LEAD + r"(?:write|create|implement|build|generate|code|give me|show me|make)\s+(?:me\s+)?"
    r"(?:an?\s+|the\s+|some\s+)?(?:[\w+#-]+\s+){0,3}?(?:function|program|class|method|query"
    r"|regexp?|dockerfile|unit tests?|api|endpoint|algorithm|command-line tool|cli|component"
    r"|module|decorator|snippet|code|script (?:to|that|which)|bash|makefile|sql)\b",
    "write <code>",
    ("coding", 4.0),
    needs="write create implement build generate code give show make",
)
_cue(
    _LEAD + r"(?:refactor|debug|optimi[sz]e|implement|compile|deploy|lint|review my (?:\w+ )?"
    r"code|convert this (?:\w+ )?code)\b",
    "code verb",
    ("coding", 4.0),
    needs="refactor debug optimize optimise implement compile deploy lint review convert",
)
_cue(
    r"\b(?:translate|convert|port|rewrite)\b.{0,80}?\b(?:in)?to\s+(?:idiomatic\s+|modern\s+)?"
    r"(?:" + _PROGRAMMING_LANGUAGES + r")\b(?!\s+(?:speakers?|audience))",
    "into a programming language",
    ("coding", 5.0),
    ("translation", -5.0),
    needs="translate convert port rewrite",
)
_cue(
    r"\bwhat does this (?:\w+[ -]){0,2}?(?:code|function|script|regex|query|snippet|one-liner"
    r"|command|program|method)\b",
    "explain this code",
    ("coding", 2.0),
    needs="does",
)
# Non-code things people "fix", "debug" or find "bugs" in.
_cue(
    r"\b(?:fix|fixing|repair|debug|debugging|troubleshoot)\w*\s+(?:\w+\s+){0,3}?(?:my|the|a|our"
    r"|this|what'?s)?\s*(?:bike|bicycle|tyre|tire|car|relationship|marriage|sleep|schedule"
    r"|life|posture|diet|roof|sink|toilet|faucet|tap|door|fence|hair|going wrong between)",
    "everyday 'fix'",
    ("coding", -4.0),
    ("conversation", 1.5),
    needs="fix fixes fixed fixing repair repairs repaired repairing debug debugs debugged"
    " debugging troubleshoot troubleshooting",
)
_cue(
    r"\bbugs?\b.{0,40}\b(?:kitchen|garden|house|bed|room|cockroach|insect|ants?|spider|beetle)",
    "insect 'bug'",
    ("coding", -4.0),
    ("conversation", 1.5),
    needs="bug bugs",
)
# Python the snake.
_cue(
    r"\b(?:ball|pet|royal|burmese|reticulated|carpet|rock)\s+pythons?\b|\bpythons?\b.{0,60}?"
    r"\b(?:venomous|prey|eat|eating|snake|reptile|tank|terrarium|shed|shedding|bite|escap\w*)\b",
    "python the snake",
    ("coding", -5.0),
    ("stem", 2.5),
    needs="python pythons",
)

# math -----------------------------------------------------------------------------
_topic(
    "math",
    2.0,
    "equation|equations|derivative|derivatives|differentiate|integral|integrals|calculus|algebra"
    "|matrix|matrices|eigenvalues|eigenvectors|eigenvalue|determinant|polynomial|quadratic"
    "|logarithm|probability|combinatorics|permutations|factorial|prime|primes|divisible"
    "|fraction|fractions|least common multiple|greatest common divisor|lcm|gcd|theorem|lemma"
    "|induction|irrational|converges|convergent|geometric series|trigonometry|hypotenuse"
    "|perimeter|square root|squared|cubed|compounded|compound interest|simplify|integer solutions"
    "|related rates|standard deviation|variance|median|percent|percentage|dice|arithmetic"
    "|lowest terms",
)
_topic(
    "math",
    1.0,
    "how many|how much|how fast|how far|twice|half|third|quarter|as many|total|together"
    "|altogether|remaining|sum|product|average|speed|per hour|miles|km|area|volume|rectangle"
    "|triangle|circle|radius|dimensions|prove|proof|solve|calculate|compute|evaluate|formula"
    "|interest|invest|chance|odds|ways|arrange|numbers|real numbers|sequence|series|value",
)
_cue(
    r"\d\s*[-+*/^×÷]\s*\(?\d|\b\d*[a-z]\s*[-+*/^=]\s*\d|[a-z]\^\d|\d\s*=\s*\d|\b[xyzn]\s*=",
    "equation",
    ("math", 2.5),
    intent=False,
    chars="0123456789=",
)
_cue(r"[∫∑√π≤≥≠∞∂±×÷²³]", "math symbols", ("math", 3.0), intent=False, raw=True, non_ascii=True)
_cue(
    r"\b(?:sin|cos|tan|log|ln|exp|sqrt)\s*\(",
    "math function",
    ("math", 2.0),
    intent=False,
    chars="(",
    needs="sin cos tan log ln exp sqrt",
)
_cue(r"\b\d+(?:\.\d+)?\s*%", "percentage", ("math", 1.0), intent=False, chars="%")
_cue(
    r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty"
    r"|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|dozen)\b",
    "number words",
    ("math", 1.0),
    intent=False,
    min_count=2,
    needs="one two three four five six seven eight nine ten eleven twelve fifteen twenty"
    " thirty forty fifty sixty seventy eighty ninety hundred dozen",
)
_cue(
    _LEAD + r"(?:solve|calculate|compute|evaluate the|simplify|differentiate|integrate|factori[sz]e"
    r"|prove|derive|find (?:the |all )?(?:value|derivative|integral|area|sum|probability|roots?"
    r"|limit|integer|solutions?|eigen\w+|dimensions|least|greatest)|convert \d|show that)\b",
    "math verb",
    ("math", 4.0),
    needs="solve calculate compute evaluate simplify differentiate integrate factorise factorize"
    " prove derive find convert show",
)
_cue(
    _LEAD + r"what(?:'s| is)\s+\d[\d\s.,]*(?:[-+*/x×÷^]|times|plus|minus|divided|percent|%)",
    "arithmetic question",
    ("math", 4.0),
    needs="what's what",
)

# reasoning ------------------------------------------------------------------------
_topic(
    "reasoning",
    2.0,
    "riddle|puzzle|logic|logical|logically|deduce|deduced|deduction|deductive|inference|infer"
    "|premise|premises|conclusion|conclude|syllogism|valid|validity|fallacy|flaw|knights"
    "|knaves|liar|truth teller|lateral thinking|brain teaser|trick question|reasoning"
    "|causation|correlation|must be true|what comes next|next in the sequence|overtake"
    "|overtaken|decision criteria|under uncertainty|clues|possibilities|labelled|weighs more",
)
_topic(
    "reasoning",
    1.0,
    "reasons|argument|assume|suppose|explain why|what happened|torch|ropes|boat|cross|river"
    "|wolf|goat|cabbage|boxes|coins|nickel|widgets|machines|position|race|options|risks"
    "|evidence|recommendation|brother|brothers|sister|sisters|detective|footprints",
)
_cue(
    r"\b(?:all|no|some)\s+\w+s\s+are\b",
    "syllogism form",
    ("reasoning", 3.0),
    intent=False,
    needs="all no some",
)
_cue(
    r"\bwhat could (?:be )?(?:the )?(?:reasons?|explain)|\bwhat happened\?"
    r"|\bhow (?:can|could|would) (?:you|i|we|he|she) (?:measure|tell|know|determine|find out"
    r"|relabel|be sure)\b|\bhow (?:is|was) (?:that|this) possible\b|\bwhy might\b"
    r"|\bwho is (?:what|lying|telling the truth)\b",
    "puzzle question",
    ("reasoning", 3.0),
    needs="what how why who",
)
_cue(
    r"\b\w+er than\b",
    "comparison chain",
    ("reasoning", 2.0),
    intent=False,
    min_count=2,
    needs="than",
)
_cue(
    r"\b(?:step by step|show (?:your|how you)|reason through|think through|explain your reasoning"
    r"|how you deduced|what can we conclude|which (?:of these|explanation) )",
    "reasoning ask",
    ("reasoning", 2.5),
    needs="step show reason think explain how what which",
)
_cue(
    r"\b(?:is|was) (?:the following|this) (?:reasoning|argument) valid|evaluate this argument"
    r"|identify the flaw|what'?s wrong with (?:it|this argument)",
    "argument check",
    ("reasoning", 4.0),
    needs="valid argument flaw wrong",
)

# extraction -------------------------------------------------------------------------
_ITEMS = (
    r"e-?mails?|email addresses|names?|dates?|times?|phone numbers?|numbers|urls?|links|addresses"
    r"|entities|hashtags|@?mentions|prices|amounts|companies|people|persons|organi[sz]ations"
    r"|locations|places|ingredients|skills|keywords|error codes|codes|timestamps|action items?"
    r"|obligations|characters|fields|values|key-value pairs|figures|products?|authors?"
    r"|deadlines?|owners?|quantities|totals?|ids?"
)
_topic(
    "extraction",
    2.0,
    "extract|extraction|named entities|key value|key value pairs|structured data|schema|as json"
    "|in json|as csv|into a table|fill in|action items|invoice|mentioned|citation|doi",
)
_cue(
    r"\bextract\w*\b",
    "extract",
    ("extraction", 4.0),
    needs="extract extracts extracted extracting extraction",
)
_cue(
    r"\b(?:pull|list|find|get|identify|grab|collect|return|highlight|give me)\s+(?:out\s+)?"
    r"(?:all|every|each|any)?\s*(?:of\s+)?(?:the\s+)?(?:[\w-]+\s+){0,2}?(?:" + _ITEMS + r")\b",
    "pull out <items>",
    ("extraction", 3.5),
    needs="pull list find get identify grab collect return highlight give",
)
_cue(
    r"\b(?:which|what)\s+(?:\w+\s+){0,4}?(?:are|were|is)\s+mentioned\b"
    r"|\bmentioned in (?:this|the)\b",
    "what is mentioned",
    ("extraction", 3.5),
    needs="mentioned",
)
_cue(
    r"\b(?:as|into|in|to)\s+(?:a\s+)?(?:json|csv|table|spreadsheet|schema|key-value)\b|\bfill in"
    r" this schema\b|\bparse this (?:address|date|name|line|record)",
    "structured output",
    ("extraction", 2.5),
    needs="json csv table spreadsheet schema key parse",
)
_cue(r"[\w.+-]+@[\w-]+\.[a-z]{2,}", "email address", ("extraction", 1.5), intent=False, chars="@")
_cue(
    r"\bfrom (?:this|these|the following|the|my)\s+(?:\w+\s+)?(?:text|paragraph|email|invoice|log"
    r"|list|review|snippet|article|resume|document|report|excerpt|citation|tweets?|scene|clause"
    r"|notes|posting|line|tickets?|recipe|invitation|sentence)\b",
    "from the given text",
    ("extraction", 2.0),
    needs="from",
)

# writing --------------------------------------------------------------------------
_KINDS = (
    r"poem|poems|haiku|sonnet|limerick|story|stories|tale|fable|essay|letter|cover letter|e-?mail"
    r"|message|note|reminder|blog post|post|article|speech|toast|eulogy|song|lyrics|verses?"
    r"|slogans?|taglines?|headlines?|bio|description|press release|script for|screenplay|chapter"
    r"|novel|introduction|intro|conclusion|paragraph|op-ed|newsletter|invitation|caption|jingle"
    r"|proposal|announcement|tweet|toast|ode|monologue|dialogue|wedding|obituary|ad|advert"
)
_topic(
    "writing",
    1.5,
    "poem|haiku|sonnet|limerick|story|essay|lyrics|slogan|slogans|tagline|toast|eulogy|blog"
    "|op ed|headline|tone|grammar|spelling|proofread|persuasive|catchy|rhyme|iambic|fiction"
    "|cliffhanger|cover letter|press release|linkedin|bedtime story|punchier|flowing|chorus"
    "|verses|draft|polite|friendly|professional|wording|reads better|flows better",
)
_cue(
    _LEAD + r"(?:write|draft|compose|pen|craft|create|give me|come up with)\s+(?:me\s+)?(?:an?\s+"
    r"|the\s+|some\s+|\d+\s+|one\s+|two\s+|three\s+|five\s+|ten\s+)?(?:[\w'-]+\s+){0,3}?"
    r"(?:" + _KINDS + r")\b",
    "write <text>",
    ("writing", 5.0),
    needs="write draft compose pen craft create give come",
)
_cue(
    _LEAD + r"(?:rewrite|rephrase|reword|proofread|edit|polish|paraphrase"
    r"|make this (?:[\w-]+ ){0,3}?(?:sound|more|less|shorter|punchier|clearer|formal|friendlier)"
    r"|turn (?:this|these)\b.{0,60}\binto (?:an?\s+)?(?:\w+\s+){0,2}"
    r"(?:paragraph|story|poem|email|letter|essay|post|speech))",
    "edit text",
    ("writing", 5.0),
    needs="rewrite rephrase reword proofread edit polish paraphrase make turn",
)

# roleplay -------------------------------------------------------------------------
_topic(
    "roleplay",
    1.5,
    "roleplay|role play|in character|character|pretend|persona|dungeon master|game master"
    "|adventure|tavern|barkeep|captain|knight|pirate|stay in character|in his voice"
    "|in her voice|interrogating|negotiation",
)
_cue(
    r"\b(?:pretend|imagine)\s+(?:that\s+)?(?:you(?:'re| are)|to be)\b|\bact(?:ing)? as (?:an?|my"
    r"|the|if)\b|\brole-?play|\bplay (?:the role|a|an) \w+|\bstay in (?:character|that role)"
    r"|\bin (?:his|her|their) voice\b|\brespond as\b|\bas if you were\b|\bfrom now on,? you(?:'re"
    r"| are)\b|\blet'?s (?:play|roleplay|pretend)\b|\bsimulate an? (?:conversation|negotiation"
    r"|interview|debate|dialogue)\b|\b(?:dungeon|game) master\b|\bi want you to act\b",
    "role request",
    ("roleplay", 5.0),
    needs="pretend imagine act acting roleplay role play stay voice respond if now let's"
    " simulate master",
)
_cue(
    r"^\W*(?:you(?:'re| are)|be)\s+(?:now\s+)?(?:an?|my|the|[a-z]+ [a-z]+\.)\s*",
    "you are <someone>",
    ("roleplay", 3.0),
    needs="you you're be",
)
_cue(
    r"\bbe (?:my|the) (?:[\w-]+\s+){0,2}(?:partner|tutor|master|coach|opponent|guide|narrator"
    r"|interviewer|grandmother|friend)\b",
    "be my <role>",
    ("roleplay", 4.0),
    needs="be",
)
_cue(r"\A\s*\*[^*\n]{3,80}\*", "stage direction", ("roleplay", 4.0), raw=True, chars="*")

# stem -----------------------------------------------------------------------------
_topic(
    "stem",
    2.0,
    "physics|chemistry|biology|photosynthesis|chlorophyll|cell|cells|molecule|molecules|atom"
    "|atoms|electron|electrons|proton|neutron|quantum|entanglement|gravity|gravitational"
    "|relativity|thermodynamics|entropy|black hole|black holes|event horizon|galaxy|planet"
    "|planets|orbit|climate|greenhouse|greenhouse effect|carbon|co2|oxygen|dna|rna|mrna|gene"
    "|genes|genetic|crispr|protein|proteins|enzyme|enzymes|virus|viruses|bacteria|bacterium"
    "|antibiotic|antibiotics|vaccine|vaccines|immune|immune system|neuron|neurons|synapse|blood"
    "|evolution|species|reptile|snake|venomous|prey|fission|fusion|nuclear|battery|batteries"
    "|lithium ion|voltage|circuit|transistor|semiconductor|magnetic|wavelength|photon|lift"
    "|aerodynamics|wings|tectonics|plate tectonics|earthquakes|volcanoes|vacuum|density"
    "|chemical|molecular|scattering|noise cancelling|sound waves|frequency|engineering"
    "|suspension bridge|arch bridge|loads|seasons|sky|ice|physiology|astronomy|geology|ecology",
)
_topic(
    "stem",
    1.0,
    "energy|light|water|earth|sun|heat|temperature|force|mass|science|scientific|scientists"
    "|experiment|medicine|disease|brain|body|float|fall|heavier|lighter|degrade|charging"
    "|headphones|airplane|resistant|resistance|immune|mammal|mammals",
)
_cue(
    r"^\W*(?:how|why) (?:do|does|did|is|are|can|do we)\b|^\W*what (?:causes|is the difference"
    r" between|happens)\b",
    "how/why question",
    ("stem", 0.5),
    ("humanities", 0.5),
    intent=False,
    needs="how why what",
)

# humanities ---------------------------------------------------------------------
_topic(
    "humanities",
    2.0,
    "history|historical|historians|war|wars|world war|empire|revolution|dynasty|century"
    "|centuries|renaissance|reformation|colonial|colonialism|treaty|fascism|communism|marx"
    "|marxism|capitalism|democracy|democracies|constitution|constitutional|monarchy|politics"
    "|political|philosophy|philosophies|philosopher|philosophers|philosophical|ethics|ethical"
    "|morality|moral|utilitarianism|virtue ethics|existentialism|kant|hobbes|locke|plato"
    "|aristotle|nietzsche|literature|literary|themes|symbolism|symbolise|symbolize|narration"
    "|narrator|shakespeare|painting|painted|painter|impressionism|baroque|sculpture|religion"
    "|religions|religious|islam|christianity|buddhism|hinduism|judaism|sunni|shia|theology"
    "|sociology|anthropology|linguistics|civil rights|magna carta|berlin wall|printing press"
    "|alienation|enlightenment|feudal|silk road|meiji|restoration|cleopatra|sistine chapel"
    "|social contract|categorical imperative|hypothesis|great depression|cold war|civil war"
    "|industrial revolution|holocaust|slavery|abolition|crusades|ottoman|byzantine|aztec"
    "|pharaoh|colonization|colonisation|independence|historian|mythology|epic poem",
)
_topic(
    "humanities",
    1.0,
    "art|culture|cultural|society|movement|women|ancient|medieval|roman|rome|greek|egypt"
    "|europe|european|american|china|japan|causes|consequences|significance|influence"
    "|influenced|remembered|ideas|reader|sympathy|scenes|novel|gatsby|mockingbird",
)
_cue(
    r"^\W*(?:what were|why did|who was|who were|who painted|who wrote|when did|what role did"
    r"|how did)\b",
    "history question",
    ("humanities", 1.5),
    needs="what why who when how",
)
_cue(r"\bsignificance of\b", "significance of", ("humanities", 1.5), needs="significance")
_cue(
    _LEAD + r"(?:analy[sz]e|discuss|interpret|compare the)\b",
    "analysis ask",
    ("humanities", 1.0),
    needs="analyse analyze discuss interpret compare",
)

# translation --------------------------------------------------------------------
_topic("translation", 1.5, _NATURAL_LANGUAGES)
_topic("translation", 1.0, "phrase|word for|pronounced|pronounce|literally|localise|localize")
_cue(
    r"\btranslat(?:e|ed|es|ing|ion)\b",
    "translate",
    ("translation", 4.0),
    needs="translate translated translates translating translation",
)
_cue(
    r"\b(?:into|to|in)\s+(?:\w+\s+)?(?:" + _NATURAL_LANGUAGES + r")\b",
    "into <language>",
    ("translation", 3.0),
    needs=_NATURAL_LANGUAGES.replace("|", " "),
)
_cue(
    r"\bhow (?:do|would|can|should) (?:you|i|we) say\b|\b(?:word|phrase) for\b|\bmean in "
    r"(?:" + _NATURAL_LANGUAGES + r")\b|\blocali[sz]e\b|\brender (?:this|it)\b|\bput (?:this|it)"
    r" into\b",
    "say it in",
    ("translation", 3.5),
    needs="say word phrase mean localise localize render put",
)
_cue(
    r"[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af\u0400-\u04ff\u0600-\u06ff\u0e00-\u0e7f\u0590-\u05ff]",
    "non-Latin script",
    ("translation", 2.0),
    intent=False,
    raw=True,
    non_ascii=True,
)

# summarization --------------------------------------------------------------------
_topic(
    "summarization",
    2.0,
    "summary|summaries|gist|overview|abstract|key points|main points|key takeaways|recap"
    "|in a nutshell|executive summary|study sheet|tl dr|tldr|condense|boil",
)
_cue(
    r"\bsummar(?:y|ies|i[sz]e|i[sz]ed|i[sz]ing)\b",
    "summarize",
    ("summarization", 4.0),
    needs="summary summaries summarize summarise summarized summarised summarizing summarising",
)
_cue(
    r"\btl;?dr\b|\bcondense\b|\bboil (?:this|it) down\b|\bsum (?:this |it )?up\b|\brecap\b"
    r"|\bgist\b|\b(?:brief )?overview of\b|\bkey (?:points|takeaways)\b|\bmain (?:points|ideas"
    r"|arguments)\b|\bshorten\b|\bexecutive summary\b|\bwhat is this (?:\w+ )?(?:story|article"
    r"|paragraph|text|document|passage|email|thread) about\b|\babstract of\b",
    "condense",
    ("summarization", 3.5),
    needs="tl tldr condense boil sum recap gist overview key main shorten executive about",
)
_cue(
    r"\b(?:in|to|under|into)\s+(?:one|two|three|four|five|a few|a single|\d+)\s+(?:sentences?"
    r"|lines?|words|bullet points|paragraphs?)\b|\bone-line\b|\bone paragraph\b",
    "length limit",
    ("summarization", 1.5),
    needs="sentence sentences line lines words points paragraph paragraphs one",
)
_cue(
    _LEAD + r"(?:summari[sz]e|condense|recap|tl;?dr|boil|shorten|sum up|give me the gist)",
    "leads with summarize",
    ("summarization", 2.0),
    needs="summarize summarise condense recap tl tldr boil shorten sum give",
)

# conversation ---------------------------------------------------------------------
_topic(
    "conversation",
    1.0,
    "dinner|cook|cooking|puppy|dog|kitten|roommate|friend|friends|boyfriend|girlfriend"
    "|relationship|trip|travel|vacation|weekend|movie|movies|book|flight|interview|nervous"
    "|sleep|exercise|running|gym|minivan|suv|kitchen|cockroach|mondays|bored|plans|gap year"
    "|university|tips|advice|favourite|favorite|joke|family|tired|lonely|social life|introvert"
    "|tyre|tire|bike|lid|budget|relaxing|names|recommend",
)
_cue(
    r"^\W*(?:hi|hello|hey|hiya|yo|good (?:morning|afternoon|evening)|greetings|howdy)\b",
    "greeting",
    ("conversation", 3.0),
    needs="hi hello hey hiya yo good greetings howdy",
)
_cue(
    r"\b(?:thanks|thank you|cheers)\b(?! for your patience)",
    "thanks",
    ("conversation", 2.0),
    needs="thanks thank cheers",
)
_cue(
    r"\bhow are you\b|\bwhat'?s up\b|\bwhat can you (?:do|help)\b|\btell me (?:a joke|about"
    r" yourself)\b|\bdo you (?:ever|like|think|have)\b|\bi'?m (?:so |really )?(?:bored|tired"
    r"|nervous|sad|stressed|lonely|torn|moving|excited)\b|\bany (?:tips|advice|ideas"
    r"|recommendations)\b|\bshould i\b|\bwhat should i\b|\bhelp me (?:plan|decide|choose)\b"
    r"|\bugh\b|\bwhich is better\b|\bcan you recommend\b|\bwhat'?s (?:a|the) (?:good|best) way\b",
    "chat",
    ("conversation", 2.0),
    needs="how what's whats what can tell do i'm im any should which ugh help",
)
_cue(
    r"\b(?:my|our|i)\b",
    "personal",
    ("conversation", 0.5),
    intent=False,
    needs="my our i i'm i've i'd i'll",
)


_PHRASE_STARTS = frozenset(phrase.split()[0] for phrase in _TOPIC_PHRASES)
_PATTERNS_BY_FEATURE: dict[str, list[int]] = {}
_UNGATED: list[int] = []
for _index, _pattern in enumerate(_PATTERNS):
    _keys = _pattern.needs or _pattern.chars or ({_NON_ASCII} if _pattern.non_ascii else set())
    for _key in _keys:
        _PATTERNS_BY_FEATURE.setdefault(_key, []).append(_index)
    if not _keys:
        _UNGATED.append(_index)


class TaskRouter(Router):
    """Routes by what the prompt asks for: coding, math, translation...

    ``detect`` scores every task from weighted cues: explicit asks
    ("translate ... into French", "summarize the following", "write a poem"),
    topic words matched whole, and shapes of text (code fences, stack traces,
    equations, non-Latin scripts). Topic evidence is capped per task so a long
    pasted text cannot outvote the request itself; negative cues handle
    look-alikes ("fix my bike", "python" the snake, "translate to TypeScript").
    A prompt whose best score stays under ``MIN_SCORE`` is ``conversation``.

    ``task_models`` maps tasks to preference lists, merged over ``DEFAULT_TASK_MODELS``.
    """

    name = "task"
    classifies = True

    MIN_SCORE: ClassVar[float] = 2.0
    TOPIC_CAP: ClassVar[float] = 4.0
    # Long prompts: instructions sit at the start or the end, so only those are read.
    HEAD_CHARS: ClassVar[int] = 3000
    TAIL_CHARS: ClassVar[int] = 1000

    # Strong models first where quality matters, cheap ones first where it barely does;
    # the simulated models last so every list works offline.
    DEFAULT_TASK_MODELS: ClassVar[dict[str, list[str]]] = {
        "coding": ["claude-sonnet-4-5", "gpt-5", "gpt-4.1", "claude-opus-4-5", "sim-slow"],
        "math": ["o4-mini", "gpt-5", "o3", "claude-sonnet-4-5", "sim-slow"],
        "reasoning": ["gpt-5", "o3", "claude-opus-4-5", "claude-sonnet-4-5", "sim-slow"],
        "stem": ["gpt-5-mini", "claude-sonnet-4-5", "gpt-4.1", "sim-slow"],
        "humanities": ["claude-sonnet-4-5", "gpt-5-mini", "gpt-4.1", "sim-slow"],
        "writing": ["claude-sonnet-4-5", "gpt-4.1", "gpt-5", "claude-haiku-4-5", "sim-slow"],
        "roleplay": ["claude-haiku-4-5", "gpt-4.1-mini", "claude-sonnet-4-5", "sim-fast"],
        "translation": ["gpt-4.1-mini", "gpt-5-mini", "claude-haiku-4-5", "sim-fast"],
        "summarization": ["gpt-4.1-mini", "gpt-5-mini", "claude-haiku-4-5", "sim-fast"],
        "extraction": ["gpt-5-nano", "gpt-4.1-mini", "claude-haiku-4-5", "sim-fast"],
        "conversation": ["gpt-4o-mini", "gpt-5-nano", "claude-3-5-haiku", "sim-fast"],
    }
    # The tier a catalogue model needs when none of a task's own list is available.
    TASK_TIERS: ClassVar[dict[str, int]] = {"coding": 2, "math": 2, "reasoning": 2}

    def __init__(
        self,
        task_models: Mapping[str, Sequence[str]] | None = None,
        default: str | None = None,
    ) -> None:
        super().__init__(default)
        unknown = [t for t in task_models or {} if t not in TASKS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], TASKS, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Tasks: {', '.join(TASKS)}."
            raise ConfigError(f"task_models names unknown task {unknown[0]!r}.", hint=hint)
        self.task_models = {
            **{t: list(ms) for t, ms in self.DEFAULT_TASK_MODELS.items()},
            **{t: list(ms) for t, ms in (task_models or {}).items()},
        }

    def detect(self, prompt: str) -> TaskGuess:
        """The task of ``prompt`` with a confidence in [0, 1] and the cues that decided it."""
        text = prompt
        if len(text) > self.HEAD_CHARS + self.TAIL_CHARS:
            text = text[: self.HEAD_CHARS] + "\n" + text[-self.TAIL_CHARS :]
        lowered, words, features = _prompt_features(text)
        topic: dict[str, float] = {}
        intent: dict[str, float] = {}
        signals: dict[str, list[tuple[float, str]]] = {}

        def add(task: str, weight: float, signal: str, is_intent: bool) -> None:
            bucket = intent if is_intent or weight < 0 else topic
            bucket[task] = bucket.get(task, 0.0) + weight
            signals.setdefault(task, []).append((weight, signal))

        word_set = set(words)
        # Each term counts once. Sorted so equal-weight signals are listed the same way every run.
        terms = sorted(word_set & _TOPIC_WORDS.keys())
        if not word_set.isdisjoint(_PHRASE_STARTS):  # join words only where a phrase may start
            for i, word in enumerate(words):
                if word in _PHRASE_STARTS:
                    terms += [" ".join(words[i : i + 2]), " ".join(words[i : i + 3])]
        seen: set[str] = set()
        for term in terms:
            cues = _TOPIC_WORDS.get(term) or _TOPIC_PHRASES.get(term)
            if cues and term not in seen:
                seen.add(term)
                for c in cues:
                    add(c.task, c.weight, c.signal, c.intent)
        # Only patterns whose gate is open, plus the ungated ones, in table order.
        candidates = set(_UNGATED)
        for key in features & _PATTERNS_BY_FEATURE.keys():
            candidates.update(_PATTERNS_BY_FEATURE[key])
        for index in sorted(candidates):
            p = _PATTERNS[index]
            if p.hit(text, lowered, features):
                for task, weight in p.effects:
                    add(task, weight, p.signal, p.intent)

        # In TASKS order, so a tie always goes the same way (sets would vary between runs).
        scores = {
            t: min(topic.get(t, 0.0), self.TOPIC_CAP) + intent.get(t, 0.0)
            for t in TASKS
            if t in topic or t in intent
        }
        best = max(scores, key=lambda t: scores[t], default="conversation")
        fallback = scores.get(best, 0.0) < self.MIN_SCORE
        if fallback:
            best = "conversation"
        # Softmax against a baseline for "none of these": a lone weak cue stays unsure.
        exps = {t: math.exp(min(s, 30.0)) for t, s in scores.items() if s > 0}
        baseline = math.exp(self.MIN_SCORE)
        confidence = exps.get(best, baseline) / (sum(exps.values()) + baseline)
        evidence = sorted(signals.get(best, []), key=lambda ws: -ws[0])
        found = tuple(dict.fromkeys(s for w, s in evidence if w > 0))
        return TaskGuess(best, round(confidence, 3), found, scores, fallback)

    def classify(self, prompt: str) -> str:
        return self.detect(prompt).task

    def explain(self, prompt: str) -> tuple[str, str]:
        guess = self.detect(prompt)
        return guess.task, guess.describe()

    def route(
        self, request: CompletionRequest | str, catalogue: Catalogue | None = None
    ) -> RouteDecision:
        request = _as_request(request)
        catalogue = catalogue if catalogue is not None else _builtin_catalogue()
        guess = self.detect(request.prompt_text)
        head = guess.describe()
        trail = _Trail(request)
        model = trail.pick(self.task_models.get(guess.task, []), catalogue)
        if model is not None:
            return self._decide(
                request, model, f"task:{guess.task}", trail.reason(head, model.name), guess.task
            )
        tier = self.TASK_TIERS.get(guess.task, 1)
        return self._fall_back(request, catalogue, trail, head, guess.task, tier)

    def __repr__(self) -> str:
        return f"TaskRouter(default={self.default!r})"


# -- complexity -------------------------------------------------------------------


@dataclass(frozen=True)
class ComplexityAssessment:
    """What ``ComplexityRouter.assess`` found: the level, its score and the top signals."""

    level: str
    score: float
    signals: tuple[tuple[str, float], ...]

    def describe(self) -> str:
        top = sorted(self.signals, key=lambda s: -abs(s[1]))[:4]
        listed = ", ".join(f"{name} {points:+.1f}" for name, points in top) or "no signals"
        return f"complexity {self.level} (score {self.score:.1f}: {listed})"


# Terms the complexity score counts, by kind; several words make a phrase. Counting them in
# one pass over the prompt's words is much faster than one regex per kind.
_CX_TERMS: dict[str, list[str]] = {}


def _cx(kind: str, terms: str) -> None:
    for term in terms.split("|"):
        _CX_TERMS.setdefault(" ".join(_WORD_RE.findall(term)), []).append(kind)


_cx(
    "demanding",
    "step by step|compare|contrast|prove|derive|design a|design an|design the|architect"
    "|architecture|analyse|analyze|evaluate|trade off|trade offs|tradeoffs|pros and cons|justify"
    "|critique|discuss|implement|optimise|optimize|weigh up|weigh the|weighing|in detail"
    "|comprehensive|structure it|with reference to|reason through|recommendation"
    "|explain how each|deduced|deduce|plan|set up|show that|show how|lay out",
)
_cx(
    "produce",
    "write|implement|build|create|draft|compose|design|refactor|review|edit|translate|convert"
    "|simulate|act as|play|pretend|imagine|be my|be the|let's",
)
_cx(
    "short",
    "haiku|slogan|slogans|tagline|taglines|tweet|limerick|one sentence|one line|in a word"
    "|yes or no|briefly|quick|quickly|tl dr|tldr|in plain language|in simple terms",
)
_cx(
    "ask",
    "explain|describe|compare|list|write|show|give|discuss|state|solve|derive|use|apply|address"
    "|include|introduce|end|keep|push back|summarize|summarise|lay out|say|flag|structure"
    "|evaluate|weigh|determine|compute|ask|answer|start|respond|return|draft|highlight|note"
    "|reason|identify|set up|then",
)
_cx(
    "constraint",
    "must|without|at least|at most|no more than|exactly|within|keep|keeping|only|never|each"
    "|every|including|preserving|following|no matter",
)
_cx("sequencing", "then|after that|finally|as well as|at the end")
_cx(
    "math",
    "integral|derivative|eigenvalue|eigenvalues|eigenvector|eigenvectors|theorem|converge"
    "|converges|convergent|induction|proof|prove|related rates|matrix|matrices|irrational"
    "|determinant|integer solutions",
)
_CX_PHRASE_STARTS = frozenset(term.split()[0] for term in _CX_TERMS if " " in term)
_EXPLAIN = re.compile(
    r"\W*(?:explain|describe|how (?:do|does|did|can|could)|why (?:do|does|did|is|are|was|were)"
    r"|what (?:were|are) the (?:main |major |key )?(?:causes|themes|differences|arguments|reasons"
    r"|mechanisms)|what is the difference|what role|what (?:was|were) the|what could)\b"
)
_SIMPLE_OPENING = re.compile(
    r"\W*(?:hi|hello|hey|thanks|thank you|what is|what's|who is|who was|when did|where is"
    r"|define|translate|how do you say|is it|is a|which|why is the sky|what does|what causes"
    r"|can you recommend|tell me a)\b"
)
_LIST_LINE = re.compile(r"\s*(?:[-*•]|\d+[.)])\s+\S")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_MATH_SYMBOL = re.compile(r"[∫∑√π≤≥∞∂]|\^\d")
# Where pasted material starts: after "...:" and a new line or an opening quote, or a fence.
_MATERIAL = re.compile(r"[:?.]\s*\n|[:?.]\s*['\"“‘]|```|\n\n|\n(?=\w+:)")
_SCHEMA_FIELD = re.compile(r"\{[^{}\n]{0,80}\}")
# How demanding each task usually is, as a prior: a proof needs more than a greeting.
_TASK_PRIOR = {"coding": 1.0, "math": 1.0, "reasoning": 1.0, "stem": 0.5, "humanities": 0.5}


# (at least, points) steps for the length of the ask in words and of pasted material.
_ASK_WORDS = ((12, 0.5), (20, 1.0), (30, 1.5), (45, 2.0))
_MATERIAL_TOKENS = ((300, 0.5), (1500, 1.0), (5000, 2.0))


def _points(value: float, steps: Sequence[tuple[float, float]]) -> float:
    """The points of the highest step ``value`` reaches (0 below the first)."""
    got = 0.0
    for at_least, points in steps:
        if value >= at_least:
            got = points
    return got


def _count_terms(words: list[str]) -> dict[str, list[str]]:
    """The complexity terms in ``words``, by kind (each occurrence)."""
    found: dict[str, list[str]] = {}
    for i, word in enumerate(words):
        terms = [word]
        if word in _CX_PHRASE_STARTS:
            terms += [" ".join(words[i : i + n]) for n in (2, 3, 4)]
        for term in terms:
            for kind in _CX_TERMS.get(term, ()):
                found.setdefault(kind, []).append(term)
    return found


def _split_material(prompt: str) -> tuple[str, str]:
    """The instruction and the material pasted after it (text to work on, code...)."""
    found = _MATERIAL.search(prompt)
    if found is None or found.start() < 8:
        return prompt, ""
    return prompt[: found.start()], prompt[found.start() :]


class ComplexityRouter(Router):
    """Routes by how demanding the prompt is: ``simple``, ``medium`` or ``complex``.

    ``assess`` adds up points from the length of the ask (the words before any
    pasted text or code) and, far less, of that material; multi-step asks
    ("step by step", "compare", "prove", "design"), the number of requests,
    constraints, enumerations, sentences, questions and list lines; code, math
    notation and long technical words; the task (coding, math and reasoning
    weigh more); minus points for short forms (a haiku, a tweet) and one-line
    everyday questions. Below ``SIMPLE_BELOW`` is simple, from ``COMPLEX_FROM``
    on complex; both were tuned on the train split of ``load_routing_prompts``.

    Each level needs a tier (simple 1, medium 2, complex 3) and the cheapest
    available model of at least that tier wins (by price per 1k input + output);
    when no model reaches it, the highest-tier available one, and the reason
    says so. ``models`` replaces that choice per level with preference lists.
    """

    name = "complexity"
    classifies = True

    SIMPLE_BELOW: ClassVar[float] = 1.0
    COMPLEX_FROM: ClassVar[float] = 4.0

    def __init__(
        self,
        models: Mapping[str, Sequence[str]] | None = None,
        default: str | None = None,
    ) -> None:
        super().__init__(default)
        unknown = [level for level in models or {} if level not in COMPLEXITY_LEVELS]
        if unknown:
            raise ConfigError(
                f"ComplexityRouter models name unknown level {unknown[0]!r}.",
                hint=f"Levels: {', '.join(COMPLEXITY_LEVELS)}.",
            )
        self.models = {level: list(names) for level, names in (models or {}).items()}
        self._task_router = TaskRouter()

    def assess(self, prompt: str, task: str | None = None) -> ComplexityAssessment:
        """The complexity level of ``prompt`` with its score and the signals behind it.

        ``task`` (as TaskRouter classifies it) is computed when not given.
        """
        signals: list[tuple[str, float]] = []

        def add(name: str, points: float) -> None:
            if points:
                signals.append((name, points))

        # Length of the *ask* is what makes a prompt demanding; pasted material (a text
        # to summarise, code to explain) counts, but far less.
        instruction, material = _split_material(prompt)
        lowered = instruction.lower()
        words = _WORD_RE.findall(lowered)
        n_words = len(instruction.split())
        add(f"{n_words}-word ask", _points(n_words, _ASK_WORDS))
        # About four characters a token: a signal, not a count. A long prompt with no
        # visible instruction/material split counts its bulk as material.
        material_tokens = (len(material) if material else max(0, len(instruction) - 1200)) // 4
        add(f"~{material_tokens}-token material", _points(material_tokens, _MATERIAL_TOKENS))
        terms = _count_terms(words)
        demanding = list(dict.fromkeys(terms.get("demanding", [])))
        if demanding:
            add("asks to " + "/".join(demanding[:3]), min(3.0, 1.25 * len(demanding)))
        add("asks for an explanation", 1.0 if _EXPLAIN.match(lowered) else 0.0)
        add("asks to produce", 0.5 if "produce" in terms else 0.0)
        asks = len(terms.get("ask", [])) + len(terms.get("sequencing", []))
        add(f"{asks} requests", 1.0 if asks >= 4 else 0.5 if asks >= 3 else 0.0)
        constraints = len(terms.get("constraint", []))
        add(f"{constraints} constraints", min(1.0, 0.5 * constraints))
        fields = len(_SCHEMA_FIELD.findall(instruction)) if "{" in instruction else 0
        commas = instruction.count(",") + fields
        add(f"{commas}-part enumeration", 1.0 if commas >= 5 else 0.5 if commas >= 3 else 0.0)
        sentences = len(_SENTENCE_END.findall(instruction))
        add(f"{sentences} sentences", 0.5 if sentences >= 3 else 0.0)
        questions = instruction.count("?")
        add(f"{questions} questions", 0.5 if questions >= 2 else 0.0)
        list_lines = sum(1 for line in instruction.splitlines() if _LIST_LINE.match(line))
        add(f"{list_lines} list lines", 1.0 if list_lines >= 3 else 0.0)
        add("code", 0.5 if "```" in prompt else 0.0)
        math_notation = "math" in terms or _MATH_SYMBOL.search(prompt) is not None
        add("math notation", 1.0 if math_notation else 0.0)
        long_words = sum(1 for w in words if len(w) >= 12)
        add("technical words", 0.5 if long_words >= 2 else 0.0)
        if task is None:
            task = self._task_router.classify(prompt)
        add(f"{task} task", _TASK_PRIOR.get(task, 0.0))
        add("short form", -1.0 if "short" in terms else 0.0)
        if n_words < 12 and _SIMPLE_OPENING.match(lowered):
            add("short everyday question", -1.0)
        score = sum(points for _, points in signals)
        if score < self.SIMPLE_BELOW:
            level = "simple"
        elif score < self.COMPLEX_FROM:
            level = "medium"
        else:
            level = "complex"
        return ComplexityAssessment(level, round(score, 2), tuple(signals))

    def classify(self, prompt: str) -> str:
        return self.assess(prompt).level

    def explain(self, prompt: str) -> tuple[str, str]:
        found = self.assess(prompt)
        return found.level, found.describe()

    def route(
        self, request: CompletionRequest | str, catalogue: Catalogue | None = None
    ) -> RouteDecision:
        request = _as_request(request)
        catalogue = catalogue if catalogue is not None else _builtin_catalogue()
        found = self.assess(request.prompt_text)
        level, tier = found.level, TIER_FOR_LEVEL[found.level]
        head = found.describe()
        trail = _Trail(request)
        rule = f"complexity:{level}"
        if level in self.models:
            model = trail.pick(self.models[level], catalogue)
            if model is not None:
                return self._decide(request, model, rule, trail.reason(head, model.name), level)
        model = _cheapest(catalogue, trail, tier)
        if model is not None:
            head = f"{head}; cheapest available with tier>={tier}"
            return self._decide(request, model, rule, trail.reason(head, model.name), level)
        usable = [m for m in _by_price(catalogue) if trail.fits(m) is None]
        if not usable:
            raise _nothing_available(catalogue)
        best = max(_tier(m) for m in usable)
        model = next(m for m in usable if _tier(m) == best)  # cheapest of the best tier
        trail.add(f"no available model has tier>={tier}; highest available is tier {best}")
        return self._decide(
            request, model, f"{rule}/highest-tier", trail.reason(head, model.name), level
        )

    def __repr__(self) -> str:
        return f"ComplexityRouter(models={self.models!r}, default={self.default!r})"


# -- rules ------------------------------------------------------------------------


def _as_set(value: str | Sequence[str] | None, allowed: Sequence[str], what: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    values = frozenset([value] if isinstance(value, str) else value)
    for v in values:
        if v not in allowed:
            close = difflib.get_close_matches(v, allowed, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Use one of {', '.join(allowed)}."
            raise ConfigError(f"Unknown {what} {v!r} in a routing rule.", hint=hint)
    return values


@dataclass
class RoutingRule:
    """Send matching prompts to ``models`` (first available wins).

    Every condition given must hold: ``task`` and ``complexity`` (one name or
    several) as classified by TaskRouter and ComplexityRouter, ``min_tokens``
    and ``max_tokens`` on the request's input tokens (counted with o200k_base),
    ``pattern`` (a regex searched case-insensitively in the prompt) and
    ``when`` (any predicate on the request). A rule with no condition always
    matches. Higher ``priority`` is tried first; ties keep declaration order.
    """

    name: str
    models: list[str]
    priority: int = 0
    task: str | list[str] | None = None
    complexity: str | list[str] | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None
    pattern: str | None = None
    when: Callable[[CompletionRequest], bool] | None = None
    _tasks: frozenset[str] = field(init=False, repr=False, compare=False)
    _levels: frozenset[str] = field(init=False, repr=False, compare=False)
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError(f"Routing rule {self.name!r} lists no models.")
        self.models = [self.models] if isinstance(self.models, str) else list(self.models)
        self._tasks = _as_set(self.task, TASKS, "task")
        self._levels = _as_set(self.complexity, COMPLEXITY_LEVELS, "complexity level")
        try:
            self._regex = re.compile(self.pattern, re.IGNORECASE) if self.pattern else None
        except re.error as exc:
            raise ConfigError(
                f"Routing rule {self.name!r}: bad pattern {self.pattern!r}: {exc}."
            ) from exc


class _Signals:
    """What rules ask about a request, each computed at most once and only when asked."""

    def __init__(self, request: CompletionRequest, router: ModelRouter) -> None:
        self.request = request
        self.prompt = request.prompt_text
        self._router = router
        self._task: TaskGuess | None = None
        self._complexity: ComplexityAssessment | None = None
        self._tokens: int | None = None

    @property
    def task(self) -> TaskGuess:
        if self._task is None:
            self._task = self._router.task_router.detect(self.prompt)
        return self._task

    @property
    def complexity(self) -> ComplexityAssessment:
        if self._complexity is None:
            self._complexity = self._router.complexity_router.assess(self.prompt, self.task.task)
        return self._complexity

    @property
    def tokens(self) -> int:
        if self._tokens is None:
            self._tokens = input_tokens(self.request)
        return self._tokens

    def match(self, rule: RoutingRule) -> list[str] | None:
        """What made ``rule`` match (empty when it has no conditions), or None."""
        matched: list[str] = []
        if rule._tasks:
            if self.task.task not in rule._tasks:
                return None
            matched.append(f"task={self.task.task}, matched: {', '.join(self.task.signals[:3])}")
        if rule._levels:
            if self.complexity.level not in rule._levels:
                return None
            matched.append(f"complexity={self.complexity.level} (score {self.complexity.score})")
        if rule.min_tokens is not None or rule.max_tokens is not None:
            n = self.tokens
            if rule.min_tokens is not None and n < rule.min_tokens:
                return None
            if rule.max_tokens is not None and n > rule.max_tokens:
                return None
            bounds = []
            if rule.min_tokens is not None:
                bounds.append(f">= {rule.min_tokens:,}")
            if rule.max_tokens is not None:
                bounds.append(f"<= {rule.max_tokens:,}")
            matched.append(f"{n:,} tokens {' and '.join(bounds)}")
        if rule._regex is not None:
            found = rule._regex.search(self.prompt)
            if found is None:
                return None
            matched.append(f"pattern matched {found.group(0)[:40]!r}")
        if rule.when is not None:
            if not rule.when(self.request):
                return None
            matched.append(f"when {getattr(rule.when, '__name__', 'predicate')}() is true")
        return matched


class ModelRouter(Router):
    """Routes with user rules: the first matching rule with an available model wins.

    Rules are tried by ``priority`` (higher first), then in the order given.
    A rule that matches but has no available model is skipped and the reason
    says so; when no rule applies, ``default`` is used, and failing that the
    cheapest available model.
    """

    name = "rules"

    def __init__(self, rules: Iterable[RoutingRule] | None = None, default: str | None = None):
        super().__init__(default)
        given = list(rules) if rules is not None else seed_rules()
        # sorted() is stable, so equal priorities keep their declaration order.
        self.rules = sorted(given, key=lambda r: -r.priority)
        self._task_router: TaskRouter | None = None
        self._complexity_router: ComplexityRouter | None = None

    @property
    def task_router(self) -> TaskRouter:
        if self._task_router is None:
            self._task_router = TaskRouter()
        return self._task_router

    @property
    def complexity_router(self) -> ComplexityRouter:
        if self._complexity_router is None:
            self._complexity_router = ComplexityRouter()
        return self._complexity_router

    def route(
        self, request: CompletionRequest | str, catalogue: Catalogue | None = None
    ) -> RouteDecision:
        request = _as_request(request)
        catalogue = catalogue if catalogue is not None else _builtin_catalogue()
        signals = _Signals(request, self)
        trail = _Trail(request)
        for rule in self.rules:
            matched = signals.match(rule)
            if matched is None:
                continue
            model = trail.pick(rule.models, catalogue, prefix=f"rule {rule.name!r} matched but ")
            if model is None:
                continue
            why = "; ".join(matched) or "always"
            head = f"rule {rule.name!r} ({why})"
            label = (
                signals.task.task
                if rule._tasks
                else signals.complexity.level
                if rule._levels
                else None
            )
            return self._decide(
                request, model, f"rule:{rule.name}", trail.reason(head, model.name), label
            )
        return self._fall_back(request, catalogue, trail, "no rule applied", None)

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self.rules)
        return f"ModelRouter(rules=[{names}], default={self.default!r})"


def seed_rules() -> list[RoutingRule]:
    """An example rule set: long prompts, code, simple questions, and a balanced default."""
    return [
        RoutingRule(
            "long-prompts",
            models=["gpt-4.1", "gpt-5", "claude-sonnet-4-5", "sim-slow"],
            min_tokens=2000,
            priority=30,
        ),
        RoutingRule(
            "coding",
            models=["claude-sonnet-4-5", "gpt-5", "gpt-4.1", "sim-slow"],
            task="coding",
            priority=20,
        ),
        RoutingRule(
            "simple-questions",
            models=["gpt-5-nano", "gpt-4.1-nano", "claude-3-5-haiku", "sim-fast"],
            complexity="simple",
            priority=10,
        ),
        RoutingRule(
            "balanced", models=["gpt-5-mini", "claude-haiku-4-5", "gpt-4.1-mini", "sim-slow"]
        ),
    ]


# -- cost -------------------------------------------------------------------------


class CostOptimizedRouter(Router):
    """Routes to the cheapest available model of at least ``min_tier``, under ``max_cost``.

    Input tokens are counted for each candidate with its own tokenizer (exact
    for OpenAI models, an estimate elsewhere). The output is
    ``expected_output_tokens`` when given, else ``guess_output_tokens`` for the
    prompt's task (TaskRouter's classification); either is capped by the
    model's and the request's ``max_tokens``. Unpriced models are skipped
    unless ``allow_unpriced``, and then rank after every priced one. Simulated
    models rank after real ones. If no priced candidate fits ``max_cost``,
    ``BudgetExceededError`` says the cheapest estimate and the cap.
    """

    name = "cost"

    def __init__(
        self,
        min_tier: int = 1,
        max_cost: float | None = None,
        expected_output_tokens: int | None = None,
        *,
        allow_unpriced: bool = False,
        default: str | None = None,
    ) -> None:
        super().__init__(default)
        if max_cost is not None and max_cost < 0:
            raise ConfigError(f"max_cost must be >= 0, got {max_cost}.")
        if expected_output_tokens is not None and expected_output_tokens < 0:
            raise ConfigError(f"expected_output_tokens must be >= 0, got {expected_output_tokens}.")
        self.min_tier = min_tier
        self.max_cost = max_cost
        self.expected_output_tokens = expected_output_tokens
        self.allow_unpriced = allow_unpriced
        self._task_router = TaskRouter()

    def _output_tokens(self, request: CompletionRequest, model: ModelConfig, task: str) -> int:
        if self.expected_output_tokens is None:
            return guess_output_tokens(request, model, task)
        caps = [model.max_tokens] + ([request.max_tokens] if request.max_tokens else [])
        return min(self.expected_output_tokens, *caps)

    def route(
        self, request: CompletionRequest | str, catalogue: Catalogue | None = None
    ) -> RouteDecision:
        request = _as_request(request)
        catalogue = catalogue if catalogue is not None else _builtin_catalogue()
        trail = _Trail(request)
        task = self._task_router.classify(request.prompt_text)
        usable: list[ModelConfig] = []
        skipped: dict[str, int] = {}
        for m in catalogue:
            if _tier(m) >= self.min_tier:
                why = trail.fits(m)
                if why is None:
                    usable.append(m)
                else:
                    skipped[why] = skipped.get(why, 0) + 1
        priced = [m for m in usable if m.priced]
        unpriced = [m for m in usable if not m.priced]
        notes: list[str] = []
        if skipped:
            notes.append("skipped " + ", ".join(f"{n} {why}" for why, n in skipped.items()))
        if unpriced and not self.allow_unpriced:
            notes.append(f"{len(unpriced)} unpriced skipped (allow_unpriced=False)")

        estimates: list[tuple[tuple[bool, float], ModelConfig, int, int, float]] = []
        for m in priced:
            n_in, n_out = input_tokens(request, m), self._output_tokens(request, m, task)
            cost = m.cost(n_in, n_out)
            assert cost is not None  # priced
            estimates.append(((m.provider == "sim", cost), m, n_in, n_out, cost))
        estimates.sort(key=lambda e: e[0])  # stable: ties keep catalogue order
        within = [e for e in estimates if self.max_cost is None or e[4] <= self.max_cost]
        cap = f" within the {_usd(self.max_cost)} cap" if self.max_cost is not None else ""
        scope = f"with tier>={self.min_tier}"
        if within:
            _, model, n_in, n_out, cost = within[0]
            over = len(estimates) - len(within)
            if over:
                notes.append(f"{over} over the cap")
            head = (
                f"cheapest of {len(usable)} available models {scope}{cap}: {model.name} "
                f"~{_usd(cost)} ({n_in:,} in + {n_out:,} out tokens)"
            )
            if len(within) > 1:
                head += f"; next {within[1][1].name} ~{_usd(within[1][4])}"
            reason = "; ".join([head, *notes])
            return self._decide(
                request, model, f"cheapest-tier>={self.min_tier}", reason, None, n_out
            )
        if estimates:  # priced models exist, but none fits the cap
            _, model, n_in, n_out, cost = estimates[0]
            raise BudgetExceededError(
                f"No available model {scope} fits the {_usd(self.max_cost)} cap per call: "
                f"the cheapest, {model.name}, would cost ~{_usd(cost)} "
                f"({n_in:,} in + {n_out:,} out tokens).",
                estimate=cost,
                hint="Raise max_cost, lower min_tier, shorten the prompt or set max_tokens.",
            )
        if unpriced and self.allow_unpriced:
            model = sorted(unpriced, key=_price_key)[0]
            head = f"no priced model {scope} is available; {model.name} is unpriced (allowed)"
            reason = "; ".join([head, *notes])
            return self._decide(request, model, f"unpriced-tier>={self.min_tier}", reason, None)
        head = f"no priced model {scope} is available" + (f" ({'; '.join(notes)})" if notes else "")
        if self.default is not None:
            chosen = trail.pick([self.default], catalogue, prefix="default ")
            if chosen is not None:
                reason = trail.reason(head, chosen.name)
                return self._decide(request, chosen, "default", reason, None)
        if not catalogue.available():
            raise _nothing_available(catalogue)
        raise ConfigError(
            f"Cost routing found {head}.",
            hint="Lower min_tier, pass allow_unpriced=True, or set prices for your models.",
        )

    def __repr__(self) -> str:
        return (
            f"CostOptimizedRouter(min_tier={self.min_tier}, max_cost={self.max_cost}, "
            f"expected_output_tokens={self.expected_output_tokens}, "
            f"allow_unpriced={self.allow_unpriced}, default={self.default!r})"
        )


# -- factory ----------------------------------------------------------------------


def make_router(
    name: str,
    *,
    default: str | None = None,
    task_models: Mapping[str, Sequence[str]] | None = None,
    **options: Any,
) -> Router:
    """The router called ``name`` ("rules", "complexity", "task" or "cost").

    ``options`` go to its constructor (``rules=`` for "rules", ``models=`` for
    "complexity", ``min_tier=``/``max_cost=``... for "cost"); ``task_models``
    is used by the task router only, so callers may always pass it.
    """
    key = name.strip().lower()
    try:
        if key == "rules":
            return ModelRouter(options.pop("rules", None), default=default, **options)
        if key == "complexity":
            return ComplexityRouter(default=default, **options)
        if key == "task":
            return TaskRouter(task_models=task_models, default=default, **options)
        if key == "cost":
            return CostOptimizedRouter(default=default, **options)
    except TypeError as exc:  # an option the router does not take
        raise ConfigError(f"Bad option for the {key!r} router: {exc}.") from exc
    close = difflib.get_close_matches(key, ROUTERS, n=1, cutoff=0.4)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"Unknown router {name!r}.", hint=f"{hint}Routers: {', '.join(ROUTERS)}.")


# -- evaluation (a teaching tool) -----------------------------------------------


def load_routing_prompts(split: str | None = None) -> pd.DataFrame:
    """The shipped labelled prompts: columns prompt, task, complexity, split.

    ``split`` ("train" or "test") keeps one part: classifiers here were tuned
    on train only, so test is the honest measure.
    """
    from importlib import resources

    import pandas as pd

    with (
        resources.files("mmo_magic")
        .joinpath("data/routing_prompts.csv")
        .open(encoding="utf-8") as f
    ):
        data = pd.read_csv(f, dtype=str, keep_default_na=False)
    if split is not None:
        if split not in ("train", "test"):
            raise ConfigError(f"Unknown split {split!r}.", hint="Use 'train', 'test' or None.")
        data = data[data["split"] == split].reset_index(drop=True)
    return data


@dataclass
class RouterEvaluation:
    """How a router's labels (or model choices) compare with the expected ones."""

    router: str
    accuracy: float
    confusion: pd.DataFrame
    predictions: pd.DataFrame
    per_label: pd.DataFrame

    def __str__(self) -> str:
        return f"{self.router}: accuracy {self.accuracy:.1%} on {len(self.predictions)} prompts"

    def _repr_html_(self) -> str:
        import html

        title = html.escape(str(self))
        return f"<p><b>{title}</b></p>{self.confusion.to_html()}"


def evaluate_router(
    router: Router,
    data: pd.DataFrame,
    *,
    prompt_column: str = "prompt",
    label_column: str = "label",
    catalogue: Catalogue | None = None,
) -> RouterEvaluation:
    """Score ``router`` on labelled prompts in ``data``.

    A classifying router (task, complexity) is compared on its label;
    others on the model ``route`` chooses from ``catalogue`` (default: the
    built-in models). Precision is NaN for a label never predicted.
    """
    import pandas as pd

    for column in (prompt_column, label_column):
        if column not in data.columns:
            raise ConfigError(
                f"evaluate_router: no column {column!r} in the data.",
                hint=f"Columns: {', '.join(map(str, data.columns))}. "
                "Pass prompt_column= / label_column= (e.g. label_column='task').",
            )
    prompts = [str(p) for p in data[prompt_column]]
    labels = [str(v) for v in data[label_column]]
    predicted: list[str] = []
    reasons: list[str] = []
    for prompt in prompts:
        if router.classifies:
            label, reason = router.explain(prompt)
            predicted.append(str(label))
        else:
            decision = router.route(prompt, catalogue)
            predicted.append(decision.model)
            reason = decision.reason
        reasons.append(reason)
    predictions = pd.DataFrame(
        {"prompt": prompts, "label": labels, "predicted": predicted, "reason": reasons}
    )
    predictions.insert(3, "correct", predictions["label"] == predictions["predicted"])
    accuracy = float(predictions["correct"].mean()) if len(predictions) else float("nan")
    confusion = pd.crosstab(
        pd.Series(labels, name="true"), pd.Series(predicted, name="predicted"), dropna=False
    )
    rows = []
    for label in sorted(set(labels) | set(predicted)):
        hits = int(((predictions["label"] == label) & predictions["correct"]).sum())
        n_true = labels.count(label)
        n_pred = predicted.count(label)
        rows.append(
            {
                "label": label,
                "precision": hits / n_pred if n_pred else float("nan"),
                "recall": hits / n_true if n_true else float("nan"),
                "support": n_true,
            }
        )
    per_label = pd.DataFrame(rows).set_index("label")
    return RouterEvaluation(router.name, accuracy, confusion, predictions, per_label)
