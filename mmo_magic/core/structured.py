"""Structured output and tool definitions: JSON schemas the model's output must follow.

``response_format(value)`` turns what users pass into a ``ResponseFormat``;
providers send its ``schema`` in their own form (OpenAI's ``json_schema``,
Anthropic's forced tool, llama.cpp's grammar) and ``parse`` checks the answer.

``tools(value)`` turns tool definitions (OpenAI's form, a pydantic model class,
or a plain function with type hints) into ``Tool``s, and ``tool_choice``
checks which of them the model may or must call. pydantic is imported only
when a model class or a function is given.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidRequestError, StructuredOutputError

__all__ = [
    "ResponseFormat",
    "StructuredOutputError",
    "Tool",
    "ToolChoice",
    "check_schema",
    "invalid_parameter",
    "parse",
    "response_format",
    "strict_schema",
    "tool_choice",
    "tools",
]


def invalid_parameter(param: str, message: str, hint: str | None = None) -> InvalidRequestError:
    """An InvalidRequestError about the request parameter ``param``; ``error.param`` names it
    (the service reports it in OpenAI's ``param`` field)."""
    return InvalidRequestError(message, hint=hint, param=param)


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
    if model is None:  # pydantic's own schemas are valid; a hand-written one is checked
        check_schema(schema, "response_format", "response_format's schema")
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
    if (problem := _violation(fmt.schema, value)) is not None:
        raise StructuredOutputError(
            f"the answer does not fit the schema: {problem}", raw=text, **where
        )
    return value


def _unfenced(text: str) -> str:
    """The text without a Markdown code fence around it (some models add one)."""
    stripped = text.strip()
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", stripped, re.DOTALL)
    return match.group(1) if match else stripped


def _validator(schema: Mapping[str, Any]) -> Any:
    """A ``jsonschema`` validator for ``schema`` (its own draft, else 2020-12), cached by content.

    jsonschema, a maintained implementation of the whole specification, replaced a
    hand-written subset that let ``maximum``, ``pattern`` and unknown types through.
    """
    blob = json.dumps(schema, sort_keys=True, default=str)
    found = _VALIDATORS.get(blob)
    if found is None:
        import jsonschema  # here: ~30 ms, and only structured output needs it

        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        found = cls(schema, format_checker=cls.FORMAT_CHECKER)
        if len(_VALIDATORS) > 256:  # bounded: schemas are few, but a service takes any
            _VALIDATORS.clear()
        _VALIDATORS[blob] = found
    return found


_VALIDATORS: dict[str, Any] = {}


def check_schema(schema: Mapping[str, Any], param: str, what: str) -> None:
    """InvalidRequestError (``param``) when ``schema`` is no valid JSON Schema, before sending.

    A typo such as ``"type": "strng"`` would otherwise reach the provider (a 400 there,
    or a schema silently ignored) or let every answer pass.
    """
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(top level)"
        raise invalid_parameter(
            param,
            f"{what} is not a valid JSON Schema: at {where}, {exc.message[:160]}",
            hint="See https://json-schema.org/understanding-json-schema for the keywords.",
        ) from None


def _violation(schema: Mapping[str, Any], value: Any) -> str | None:
    """How ``value`` breaks ``schema`` (the most relevant error), or None when it fits."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
    return f"{where}: {error.message[:200]}"


# -- tool definitions --------------------------------------------------------------------------

_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_NO_PARAMETERS: Mapping[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its name, what it does, and its arguments' JSON schema.

    ``strict`` (OpenAI): the arguments must follow the schema exactly; None: unsaid.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: dict(_NO_PARAMETERS), hash=False, compare=False
    )
    strict: bool | None = None

    def openai(self) -> dict[str, Any]:
        """OpenAI's ``{"type": "function", "function": {...}}`` form."""
        function: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters)}
        if self.description:
            function["description"] = self.description
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}

    def anthropic(self) -> dict[str, Any]:
        """Anthropic's ``{"name", "description", "input_schema"}`` form."""
        tool: dict[str, Any] = {"name": self.name, "input_schema": dict(self.parameters)}
        if self.description:
            tool["description"] = self.description
        return tool


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Whether the model may call a tool ("auto"), must not ("none") or must ("required");
    ``name``: the one tool it must call."""

    mode: Literal["auto", "none", "required"]
    name: str | None = None

    def openai(self) -> str | dict[str, Any]:
        if self.name is not None:
            return {"type": "function", "function": {"name": self.name}}
        return self.mode


def tools(value: object) -> tuple[Tool, ...]:
    """Tools from a list of: OpenAI's ``{"type": "function", "function": {name, description,
    parameters}}``, a bare ``{name, description, parameters}``, a pydantic model class (its
    fields are the arguments), a plain function with type hints, or ``Tool``s."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise invalid_parameter(
            "tools",
            f"tools must be a list of tool definitions, got {type(value).__name__}.",
            hint='For example tools=[{"type": "function", "function": {"name": "get_weather", '
            '"parameters": {...}}}], or a list of functions with type hints.',
        )
    out = tuple(_tool(i, item) for i, item in enumerate(value))
    names = [t.name for t in out]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise invalid_parameter("tools", f"tools names {dupes[0]!r} more than once.")
    return out


def _tool(index: int, item: object) -> Tool:
    if isinstance(item, Tool):
        return item
    if isinstance(item, type) and hasattr(item, "model_json_schema"):
        schema = dict(item.model_json_schema())
        description = str(schema.pop("description", "") or "")
        schema.pop("title", None)
        return _checked(index, item.__name__, description, schema, None)
    if isinstance(item, Mapping):
        spec: Any = item
        if item.get("type") == "function" or "function" in item:
            spec = item.get("function")
            if item.get("type", "function") != "function" or not isinstance(spec, Mapping):
                raise invalid_parameter(
                    "tools",
                    f"tools[{index}] must be {{'type': 'function', 'function': {{name, "
                    f"parameters}}}}, got {item!r:.80}.",
                )
        parameters = spec.get("parameters", spec.get("input_schema"))
        strict = spec.get("strict")
        return _checked(
            index,
            spec.get("name"),
            spec.get("description") or "",
            _NO_PARAMETERS if parameters is None else parameters,
            strict,
        )
    if callable(item):
        return _from_function(index, item)
    raise invalid_parameter(
        "tools",
        f"tools[{index}] must be a tool definition (a dict), a pydantic model class or a "
        f"function, got {type(item).__name__}.",
    )


def _checked(
    index: int, name: object, description: object, parameters: object, strict: object
) -> Tool:
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise invalid_parameter(
            "tools",
            f"tools[{index}] has no valid name ({name!r:.40}): names are 1 to 64 letters, "
            "digits, _ or -.",
        )
    if not isinstance(description, str):
        raise invalid_parameter("tools", f"tools[{index}] ({name}): description must be text.")
    if not isinstance(parameters, Mapping):
        raise invalid_parameter(
            "tools", f"tools[{index}] ({name}): parameters must be a JSON schema (an object)."
        )
    if strict is not None and not isinstance(strict, bool):
        raise invalid_parameter("tools", f"tools[{index}] ({name}): strict must be true or false.")
    check_schema(parameters, "tools", f"tools[{index}] ({name}): parameters")
    return Tool(name, description, dict(parameters), strict)


def _from_function(index: int, function: Callable[..., Any]) -> Tool:
    """A Tool from a function's signature: each parameter an argument, typed by its hint."""
    import typing

    import pydantic  # here: importing mmo_magic never imports pydantic

    try:
        hints = typing.get_type_hints(function)
        signature = inspect.signature(function)
    except (TypeError, ValueError, NameError) as exc:
        raise invalid_parameter(
            "tools", f"tools[{index}]: cannot read the signature of {function!r:.60}: {exc}"
        ) from None
    fields: dict[str, Any] = {}
    for name, p in signature.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = ... if p.default is p.empty else p.default
        fields[name] = (hints.get(name, Any), default)
    name = getattr(function, "__name__", "")
    model = pydantic.create_model(name or "tool", **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    description = (inspect.getdoc(function) or "").split("\n\n")[0].strip()
    return _checked(index, name, description, schema, None)


def tool_choice(value: object, offered: Sequence[Tool]) -> ToolChoice:
    """A ToolChoice from "auto", "none", "required", a tool's name, or OpenAI's
    ``{"type": "function", "function": {"name": ...}}``; the named tool must be offered."""
    name: object = None
    if isinstance(value, Mapping):
        function = value.get("function")
        name = function.get("name") if isinstance(function, Mapping) else value.get("name")
        if value.get("type") not in ("function", "tool") or not isinstance(name, str):
            name = None
            value = repr(value)
    elif isinstance(value, str) and value not in ("auto", "none", "required"):
        name = value
    elif isinstance(value, str):
        if not offered and value != "none":
            raise invalid_parameter(
                "tool_choice", f"tool_choice={value!r} needs tools.", hint="Pass tools=[...]."
            )
        return ToolChoice(value)  # type: ignore[arg-type]
    if not isinstance(name, str):
        raise invalid_parameter(
            "tool_choice",
            f"tool_choice must be 'auto', 'none', 'required' or a tool's name, got {value!r:.60}.",
        )
    known = [t.name for t in offered]
    if name not in known:
        raise invalid_parameter(
            "tool_choice",
            f"tool_choice names {name!r}, which is not one of the tools.",
            hint=f"Tools: {', '.join(known) or 'none given'}.",
        )
    return ToolChoice("required", name)
