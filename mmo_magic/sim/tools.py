"""Tool calls and structured output in the simulated provider: reading each wire's tools
and tool choice, and making an instance of a JSON schema (the arguments or answer it returns).
Standard library only, like the rest of the simulator."""

from __future__ import annotations

from typing import Any

from .errors import BadRequest

__all__ = [
    "Tools", "anthropic_tool_choice", "anthropic_tools", "instance_of", "openai_tool_choice",
    "openai_tools", "tool_to_call",
]  # fmt: skip


Tools = list[tuple[str, dict[str, Any]]]  # (name, the JSON schema of its arguments)


def openai_tools(value: object) -> Tools:
    if value is None:
        return []
    out: Tools = []
    for tool in value if isinstance(value, list) else [None]:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest("each of 'tools' must be {type: function, function: {name, ...}}")
        out.append((function["name"], _arguments_schema(function.get("parameters"))))
    return out


def _arguments_schema(schema: object) -> dict[str, Any]:
    """A tool's argument schema: arguments are always an object (``{}`` says nothing more)."""
    schema = schema if isinstance(schema, dict) else {}
    return schema if "type" in schema else {**schema, "type": "object"}


def openai_tool_choice(value: object) -> tuple[str, str | None]:
    """(mode, forced tool name) of an OpenAI tool_choice."""
    if value is None or value in ("auto", "none", "required"):
        return str(value or "auto"), None
    function = value.get("function") if isinstance(value, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return "required", function["name"]
    raise BadRequest(f"invalid tool_choice {value!r:.60}")


def anthropic_tools(value: object) -> Tools:
    if value is None:
        return []
    out: Tools = []
    for tool in value if isinstance(value, list) else [None]:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise BadRequest("each of 'tools' must be {name, input_schema, ...}")
        out.append((tool["name"], _arguments_schema(tool.get("input_schema"))))
    return out


def anthropic_tool_choice(value: object) -> tuple[str, str | None]:
    """(mode, forced tool name) of an Anthropic tool_choice, in OpenAI's words."""
    if value is None:
        return "auto", None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "tool" and isinstance(value, dict) and isinstance(value.get("name"), str):
        return "required", value["name"]
    if kind in ("auto", "any", "none"):
        return {"any": "required"}.get(str(kind), str(kind)), None
    raise BadRequest(f"invalid tool_choice {value!r:.60}")


def tool_to_call(
    tools: Tools, mode: str, forced: str | None, called: list[str], *, ended_with_result: bool
) -> tuple[str | None, dict[str, Any] | None]:
    """(name, argument schema) of the tool the reply calls, or (None, None) for a text reply.

    A forced tool is called; "required" calls the first tool not called yet in the
    conversation (else the first), so an agent loop moves on and ends; "auto" calls the
    first tool unless the conversation ends with tool results (then the reply is text).
    """
    schemas = dict(tools)
    if forced is not None:
        if forced not in schemas:
            raise BadRequest(f"tool_choice names {forced!r}, which is not in tools")
        return forced, schemas[forced]
    if not tools or mode == "none" or (mode == "auto" and ended_with_result):
        return None, None
    if mode == "required":
        name = next((n for n, _ in tools if n not in called), tools[0][0])
        return name, schemas[name]
    return tools[0]


def instance_of(schema: dict[str, Any], seed: str = "") -> Any:
    """A value satisfying ``schema`` (objects, strings, numbers, integers, booleans, arrays,
    enums, const, anyOf/oneOf, $ref into $defs), the same every time for the same inputs."""
    return _instance(schema, schema, seed, 0)


def _instance(node: Any, root: dict[str, Any], seed: str, depth: int) -> Any:
    if not isinstance(node, dict) or depth > 8:
        return None
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _instance(target, root, seed, depth + 1)
    if "const" in node:
        return node["const"]
    if isinstance(node.get("enum"), list) and node["enum"]:
        return node["enum"][0]
    for combo in ("anyOf", "oneOf", "allOf"):
        if isinstance(node.get(combo), list) and node[combo]:
            choices = [
                n for n in node[combo] if not (isinstance(n, dict) and n.get("type") == "null")
            ]
            return _instance((choices or node[combo])[0], root, seed, depth + 1)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in node else "string"
    if kind == "object":
        props = node.get("properties")
        props = props if isinstance(props, dict) else {}
        return {
            str(name): _instance(sub, root, str(name), depth + 1) for name, sub in props.items()
        }
    if kind == "array":
        count = min(max(1, _number(node.get("minItems"), 1)), _MAX_SIZE)
        items = node.get("items")
        return [_instance(items if isinstance(items, dict) else {}, root, seed, depth + 1)
                for _ in range(int(count))]  # fmt: skip
    if kind == "integer":
        if "minimum" in node:
            return int(_number(node["minimum"], 1))
        return min(1, int(_number(node["maximum"], 1))) if "maximum" in node else 1
    if kind == "number":
        return float(_number(node.get("minimum"), 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = f"simulated {seed}".strip() if seed else "simulated"
    low, high = min(int(_number(node.get("minLength"), 0)), _MAX_SIZE), node.get("maxLength")
    text = text.ljust(low, "x")
    return text[: max(high, 0)] if isinstance(high, int) else text


# Sizes asked for by minItems and minLength are met up to this, so that a schema cannot
# make the simulation build a huge reply.
_MAX_SIZE = 1000


def _number(value: object, default: float) -> float:
    """``value`` if it is a finite number (not a bool), else ``default``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e15
    return float(value) if ok else default  # type: ignore[arg-type]
