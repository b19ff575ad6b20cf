"""A simulated LLM provider: a real HTTP server on 127.0.0.1 (SIMULATED, not a model).

It speaks the OpenAI Chat Completions (``POST /v1/chat/completions``) and
Anthropic Messages (``POST /v1/messages``) wire formats, JSON and streaming SSE,
so the unmodified ``openai`` and ``anthropic`` SDKs talk to it::

    from mmo_magic.sim import SimServer, Behaviour

    with SimServer() as sim:
        client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x")
        anthropic.AsyncAnthropic(base_url=sim.anthropic_base_url, api_key="x")
        sim.script("my-model", Behaviour(fail=429, retry_after=1.0))

Behaviour is scripted by the model name: ``BASE?key=value&...`` where the keys
are ``Behaviour`` field names, e.g. ``sim-fast?tps=20&tokens=50`` or
``sim-fast?fault=cut&cut_after=2``. See ``behaviour`` for presets and token
accounting. Every response carries the header ``x-simulated: true``.

Structured output and tool calls are scripted too (details in ``behaviour``):
a request with a JSON schema gets a JSON object satisfying it; a request with
tools gets a call to the first tool (or the one ``tool_choice`` names) whose
arguments satisfy the tool's schema, streamed or not, in either wire format;
once the conversation ends with tool results, the answer is text quoting them.

Standard library only: importing this never imports an SDK or httpx.
"""

from .behaviour import PRESETS, Behaviour, OptionError
from .server import Disconnect, SimServer

__all__ = ["PRESETS", "Behaviour", "Disconnect", "OptionError", "SimServer"]
