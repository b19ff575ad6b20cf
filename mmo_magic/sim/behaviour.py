"""What a simulated model does, decided from its name.

A model name is ``BASE`` or ``BASE?key=value&key=value`` (URL query syntax, so
``+`` or ``%20`` is a space). Keys are the ``Behaviour`` field names. Options
override, in this order: the behaviour scripted for BASE with
``SimServer.script``, else the built-in preset named BASE, else the defaults.
An unknown key or a bad value gets HTTP 400 in the provider's error shape.

Built-in presets:

=================  ==========================================
``sim-fast``       no delays at all (the defaults)
``sim-slow``       ``ttft_ms=600``, ``tps=40``
``sim-echo``       ``reply=echo``
``sim-flaky``      ``fail=503``, ``fail_times=1`` (fails once, then answers)
``sim-overloaded`` ``fail=529`` (always overloaded)
=================  ==========================================

Replies: ``reply=words`` (default) gives ``tokens`` words from ``WORDS``, seeded
by the base name and the last user message (so options never change the text);
``reply=echo`` repeats the last user message's words; ``reply=judge`` answers
as an LLM judge would, picking the fenced candidate that contains ``prefer``
(``garble_times=N``: its first N verdicts are unparseable prose); any other
value is the literal reply (``reply=hello+world``; line breaks are kept).
``reply=parts`` says what images and documents the request carried: their count,
kinds, media types and sizes (the simulation cannot see what an image shows).
Images and documents (OpenAI ``image_url`` data or http URLs and ``file`` inputs;
Anthropic ``image``/``document`` blocks, base64 or URL) are validated as the real APIs
do: the media type must be one they take and match the bytes, the base64 must decode,
and a part over the provider's size limit (OpenAI 20 MB per image, Anthropic 5 MB;
32 MB per PDF) gets a 400. Each image counts 85 input tokens, each document 500.
Structured output (OpenAI ``response_format`` json_schema or json_object, or
Anthropic's forced tool): ``words`` and ``echo`` replies become a JSON object
satisfying the schema (``wire.instance_of``, deterministic), streamed a word at
a time (Anthropic: as ``input_json_delta``); judge and literal replies stay as
scripted, so tests can make a model break the format. ``structured=false``
answers such a request, and any request with tools, with a 400, as a server
without them would.

Tool calls (OpenAI ``tools``/``tool_choice``, Anthropic ``tools``/``tool_choice``),
deterministic, for ``words`` and ``echo`` replies: a forced tool is called;
``required`` (Anthropic ``any``) calls the first tool not yet called in the
conversation, else the first; ``auto`` (the default) calls the first tool unless
the conversation ends with tool results, and then answers in text quoting them
(``Tool result: ...``); ``none`` answers in text. A call's arguments are a JSON
object satisfying the tool's schema (``wire.instance_of``: required and optional
properties, enums, types), streamed a word at a time (OpenAI ``delta.tool_calls``,
Anthropic ``input_json_delta``); its id depends only on the tool and the number of
messages, and the finish reason is "tool_calls" / "tool_use".
Content is the words joined by single spaces; each streamed delta is one
word, later ones with a leading space. A
request's max_tokens truncates the reply and makes the finish reason
"length" (OpenAI) / "max_tokens" (Anthropic).

Reasoning: a request with OpenAI's ``reasoning_effort`` (one of minimal, low, medium,
high) or Anthropic's ``thinking`` (checked by Anthropic's rules: budget_tokens >= 1024,
max_tokens above it, temperature unset or 1, top_p >= 0.95, no forced tool) thinks
``think`` words (default 8), for ``think_ms`` of silence before the first visible word.
OpenAI: the first chunk (role only) comes at once, then the silence; usage reports the
words in ``completion_tokens`` and ``completion_tokens_details.reasoning_tokens``.
Anthropic: a ``thinking`` block streams first (``thinking_delta`` a word at a time, then a
``signature_delta``), the text block after it; output_tokens include the thinking.

Embeddings (OpenAI's ``POST /v1/embeddings``, ``input`` a string or a list of strings,
``dimensions`` default 64, ``encoding_format`` float or base64): a unit vector of hashed
words per text, so texts sharing words are close; ``prompt_tokens`` is their words.
``fail=`` and ``latency_ms`` apply as for chat.

Token accounting, which tests rely on: a token is a whitespace-separated word.
Input tokens are the words of every message's text plus the system prompt;
output tokens are the words the reply emits.

Timing: ``latency_ms`` before the response headers, then ``ttft_ms`` before the
first word, then one word every ``1/tps`` s. A JSON (non-streaming) answer
is sent when the equivalent stream would have finished.

Hostile upstreams: ``usage_output=VALUE`` reports VALUE (read as JSON, else as text:
``x``, ``1.5``, ``-5``, ``100000000000000000000``) as the output token count;
``reply_key=true`` ends the answer with the API key the request carried;
``echo_key=true`` quotes it in error messages.

``fail_times=N`` limits both ``fail`` and ``fault`` to the first N requests with
that exact model name (counts restart on ``SimServer.reset``). Faults on a
JSON request: reset and hang as for streams; stall/cut send half the promised
body; malformed sends invalid JSON; no_finish has a null finish reason.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import typing
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

__all__ = [
    "FAILS",
    "FAULTS",
    "PRESETS",
    "WORDS",
    "Behaviour",
    "OptionError",
    "reply_words",
    "resolve",
    "split_name",
]

# The vocabulary of reply="words": plain, unremarkable words, so simulated output
# never looks like a real model's answer.
WORDS = (  # noqa: SIM905 - 64 words read better as prose than as a list literal
    "apple river stone cloud garden window paper candle "
    "forest bridge lantern meadow pencil harbor orange silver "
    "basket mountain kettle violin feather island marble pocket "
    "thunder velvet copper sparrow blanket ladder mirror planet "
    "button cotton desert engine falcon ginger hollow jacket "
    "kitchen lemon magnet needle ocean pepper quiet rocket "
    "saddle tunnel umbrella valley wander yellow zebra anchor "
    "bottle circle dragon echo fabric glacier harvest ivory"
).split()

FAILS = ("429", "500", "503", "529", "401", "400", "context_length", "content_policy")
FAULTS = ("reset", "hang", "stall", "cut", "malformed", "no_finish", "no_done")


class OptionError(ValueError):
    """A model name carried an option that is unknown or has a bad value."""


@dataclass(frozen=True)
class Behaviour:
    """How one simulated model answers. Query option names equal field names."""

    latency_ms: float = 0  # before response headers
    ttft_ms: float = 0  # after headers, before the first token
    tps: float = 0  # tokens per second after the first; 0 = no delay
    tokens: int = 12  # reply length for reply="words"
    reply: str = "words"  # "words" | "echo" | any other text is the literal reply
    blocks: int = 1  # Anthropic only: number of text content blocks
    fail: int | str | None = None  # one of FAILS
    retry_after: float | None = None  # seconds, sent as a retry-after header
    retry_after_ms: float | None = None  # sent as a retry-after-ms header
    fail_times: int | None = None  # only the first N requests misbehave; None = all
    fault: str | None = None  # one of FAULTS
    stall_after: int = 3
    cut_after: int = 3
    malformed_at: int = 2
    usage: bool = True  # False: OpenAI responses carry no usage at all
    hold_s: float = 60  # upper bound on how long hang/stall/no_done hold a connection
    echo_key: bool = False  # error messages quote the request's API key (leak tests)
    reply_key: bool = False  # the answer ends with the request's API key (leak tests)
    # A JSON value reported as the output token count instead of the truth ("x", 1.5, -5,
    # 1e20: hostile-usage tests); unset reports the truth.
    usage_output: str | None = None
    prefer: str = ""  # reply=judge: the word that makes a candidate win
    garble_times: int = 0  # reply=judge: the first N verdicts are prose with no JSON
    think: int = 8  # words of thinking when reasoning is asked for (reasoning tokens)
    think_ms: float = 0  # silent thinking before the first visible word, when asked for
    structured: bool = True  # False: a request for structured output gets a 400, as from a
    # server without json_schema (or Anthropic tools)

    def __post_init__(self) -> None:
        # Scripts may say fail=429; query strings always give text. Keep one form.
        if self.fail is not None:
            object.__setattr__(self, "fail", str(self.fail))
        if self.fail is not None and self.fail not in FAILS:
            raise OptionError(f"unknown fail value {self.fail!r}; expected one of {FAILS}")
        if self.fault is not None and self.fault not in FAULTS:
            raise OptionError(f"unknown fault value {self.fault!r}; expected one of {FAULTS}")


PRESETS: dict[str, Behaviour] = {
    "sim-fast": Behaviour(),
    "sim-slow": Behaviour(ttft_ms=600, tps=40),
    "sim-echo": Behaviour(reply="echo"),
    "sim-flaky": Behaviour(fail="503", fail_times=1),
    "sim-overloaded": Behaviour(fail="529"),
}

_HINTS = typing.get_type_hints(Behaviour)
_FIELDS = tuple(f.name for f in dataclasses.fields(Behaviour))


def split_name(model: str) -> tuple[str, list[tuple[str, str]]]:
    """``"m?tps=5"`` -> ``("m", [("tps", "5")])``."""
    base, _, query = model.partition("?")
    return base, parse_qsl(query, keep_blank_values=True)


def _convert(name: str, raw: str) -> object:
    hint = _HINTS[name]
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    if type(None) in typing.get_args(hint) and raw.lower() in ("", "none", "null"):
        return None
    if str in kinds:
        return raw
    kind = kinds[0]
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise OptionError(f"option {name!r} expects true or false, got {raw!r}")
    try:
        return kind(raw)
    except ValueError:
        raise OptionError(f"option {name!r} expects {kind.__name__}, got {raw!r}") from None


def resolve(model: str, scripts: Mapping[str, Behaviour]) -> tuple[str, Behaviour]:
    """Return (base name, behaviour) for a model name as sent; OptionError if bad."""
    base, options = split_name(model)
    behaviour = scripts.get(base) or PRESETS.get(base) or Behaviour()
    changes: dict[str, Any] = {}
    for key, raw in options:
        if key not in _FIELDS:
            raise OptionError(f"unknown option {key!r} in model name {model!r}")
        changes[key] = _convert(key, raw)
    return base, dataclasses.replace(behaviour, **changes) if changes else behaviour


_CANDIDATE = re.compile(r"<<<CANDIDATE ([A-Z]) (\w+)>>>(.*?)<<<END \1 \2>>>", re.DOTALL)


def judge_verdict(prompt: str, prefer: str) -> str:
    """A JSON verdict on the fenced candidates in ``prompt``: the first containing ``prefer``.

    A scripted judge for tests and demos: it reads the candidates the way
    mmo_magic.orchestration.judges presents them and picks by content, so its verdict
    survives a swap of the order (unlike a judge biased towards position).
    """
    candidates = [(m.group(1), m.group(3)) for m in _CANDIDATE.finditer(prompt)]
    chosen = next(
        (label for label, text in candidates if prefer.casefold() in text.casefold()), None
    )
    if chosen is None or not prefer:
        return json.dumps({"winner": "tie", "reason": "no candidate stands out (simulated judge)"})
    ranking = [chosen] + [label for label, _ in candidates if label != chosen]
    return json.dumps({"winner": chosen, "ranking": ranking, "reason": f"it mentions {prefer}"})


def thinking_words(behaviour: Behaviour, base: str, last_user: str) -> tuple[str, ...]:
    """What a model thinks when reasoning is asked for: ``think`` words, seeded like replies."""
    rng = random.Random(zlib.crc32(f"think:{base}{last_user}".encode()))
    return tuple(rng.choice(WORDS) for _ in range(max(0, behaviour.think)))


def reply_words(behaviour: Behaviour, base: str, last_user: str, seen: int = 1) -> list[str]:
    """The reply's words before max_tokens truncation; ``seen`` numbers this model's requests."""
    if behaviour.reply == "echo":
        return last_user.split()
    if behaviour.reply == "judge":
        if seen <= behaviour.garble_times:
            return ["I", "would", "say", "the", "first", "one", "is", "better,", "probably."]
        return judge_verdict(last_user, behaviour.prefer).split()
    if behaviour.reply != "words":
        # Literal text keeps its line breaks: each word carries the whitespace before it.
        words = re.findall(r"\s*\S+", behaviour.reply)
        return [words[0].lstrip(), *words[1:]] if words else []
    # Seeded by the base name (not the options) so adding latency or faults to a
    # model name never changes what it says.
    rng = random.Random(zlib.crc32(f"{base}{last_user}".encode()))
    return [rng.choice(WORDS) for _ in range(max(0, behaviour.tokens))]
