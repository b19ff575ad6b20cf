"""Structured output: a JSON schema (or a pydantic model class) the answer must follow.

``response_format(value)`` turns what users pass into a ``ResponseFormat``;
providers send its ``schema`` in their own form (OpenAI's ``json_schema``,
Anthropic's forced tool, llama.cpp's grammar) and ``parse`` checks the answer.
pydantic is imported only when a model class is given.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRequestError, StreamError

__all__ = [
    "ResponseFormat",
    "StructuredOutputError",
    "parse",
    "response_format",
    "strict_schema",
]


class StructuredOutputError(StreamError):
    """The model's answer is not valid JSON for the requested schema. ``raw`` is its text."""

    def __init__(self, message: str, *, raw: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.raw = raw


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """A JSON schema the answer must follow; ``model`` the pydantic class it came from, if any."""

    name: str
    schema: Mapping[str, Any] = field(hash=False, compare=False)
    model: Any = field(default=None, hash=False, compare=False)
    key: str = ""  # a digest of the schema: equal schemas, equal keys (the cache key uses it)
    # OpenAI's form as the user gave it (json_schema or json_object), sent as given.
    given: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)

    def openai(self) -> dict[str, Any]:
        """OpenAI's ``response_format`` for this schema: as given in OpenAI's form, else strict."""
        if self.given is not None:
            return copy.deepcopy(dict(self.given))
        return {
            "type": "json_schema",
            "json_schema": {
                "name": self.name,
                "schema": strict_schema(self.schema),
                "strict": True,
            },
        }


def response_format(value: object) -> ResponseFormat:
    """A ResponseFormat from a pydantic model class, a JSON schema dict, or OpenAI's
    ``{"type": "json_schema", "json_schema": {...}}`` form; InvalidRequestError otherwise."""
    if isinstance(value, ResponseFormat):
        return value
    model = None
    given = None
    name = "response"
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        model = value
        schema = value.model_json_schema()
        name = value.__name__
    elif isinstance(value, Mapping):
        schema = dict(value)
        if schema.get("type") == "json_schema":
            inner = schema.get("json_schema")
            if not isinstance(inner, Mapping) or not isinstance(inner.get("schema", {}), Mapping):
                raise InvalidRequestError(
                    "response_format of type json_schema needs json_schema: {name, schema}."
                )
            given = dict(schema)
            name = str(inner.get("name") or name)
            schema = dict(inner.get("schema") or {"type": "object"})
        elif schema.get("type") == "json_object":
            given = dict(schema)
            schema = {"type": "object"}
        name = str(schema.get("title") or name)
    else:
        raise InvalidRequestError(
            f"response_format must be a JSON schema (a dict) or a pydantic model class, "
            f"got {type(value).__name__}.",
            hint='For example response_format={"type": "object", "properties": {...}}.',
        )
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64] or "response"
    blob = json.dumps(schema, sort_keys=True, separators=(",", ":"), default=str)
    key = hashlib.sha256(f"{name}\n{blob}".encode()).hexdigest()[:32]
    key = hashlib.sha256(f"{key}\n{given is not None}".encode()).hexdigest()[:32]
    return ResponseFormat(name, schema, model, key, given)


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` as OpenAI's strict mode wants it: every object closed, every property required."""
    out = copy.deepcopy(dict(schema))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node:
                props = node.get("properties") or {}
                node.setdefault("additionalProperties", False)
                node["required"] = list(props)
            for unsupported in ("maxLength", "minLength"):  # not in strict mode everywhere
                node.pop(unsupported, None)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    return out


def parse(fmt: ResponseFormat, text: str, **where: Any) -> Any:
    """The answer decoded and checked: a ``fmt.model`` instance, else the decoded JSON.

    Raises StructuredOutputError (``where``: provider, model) keeping the raw text.
    """
    stripped = _unfenced(text)
    try:
        value = json.loads(stripped)
    except ValueError as exc:
        raise StructuredOutputError(
            f"the answer is not valid JSON ({exc}): {text[:80]!r}", raw=text, **where
        ) from None
    if fmt.model is not None:
        import pydantic  # here: importing mmo_magic never imports pydantic

        try:
            return fmt.model.model_validate(value)
        except pydantic.ValidationError as exc:
            problems = exc.errors()
            first = f"{problems[0]['loc']} {problems[0]['msg']}" if problems else str(exc)
            raise StructuredOutputError(
                f"the answer does not fit {fmt.name}: {first}",
                raw=text,
                **where,
            ) from None
    if (problem := _violation(fmt.schema, value, fmt.schema, "$")) is not None:
        raise StructuredOutputError(
            f"the answer does not fit the schema: {problem}", raw=text, **where
        )
    return value


def _unfenced(text: str) -> str:
    """The text without a Markdown code fence around it (some models add one)."""
    stripped = text.strip()
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", stripped, re.DOTALL)
    return match.group(1) if match else stripped


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return target if isinstance(target, Mapping) else {}
    return node


def _violation(node: Any, value: Any, root: Mapping[str, Any], path: str) -> str | None:
    """The first way ``value`` breaks schema ``node`` (a useful subset of JSON Schema), or None."""
    if not isinstance(node, Mapping):
        return None
    node = _resolve(node, root)
    for combo in ("anyOf", "oneOf"):
        if isinstance(node.get(combo), list):
            if all(_violation(n, value, root, path) for n in node[combo]):
                return f"{path} matches none of {combo}"
            return None
    if "enum" in node and value not in node["enum"]:
        return f"{path} is {value!r:.40}, not one of {node['enum']!r:.80}"
    if "const" in node and value != node["const"]:
        return f"{path} must be {node['const']!r:.40}"
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []
    if kinds:
        ok = any(
            isinstance(value, _TYPES.get(k, object))
            and not (k in ("integer", "number") and isinstance(value, bool))
            for k in kinds
        )
        if not ok:
            return f"{path} should be {'/'.join(kinds)}, got {type(value).__name__}"
    if isinstance(value, dict):
        for name in node.get("required") or ():
            if name not in value:
                return f"{path} lacks {name!r}"
        for name, sub in (node.get("properties") or {}).items():
            if name in value and (why := _violation(sub, value[name], root, f"{path}.{name}")):
                return why
    if isinstance(value, list) and isinstance(node.get("items"), Mapping):
        for i, item in enumerate(value):
            if why := _violation(node["items"], item, root, f"{path}[{i}]"):
                return why
    return None
