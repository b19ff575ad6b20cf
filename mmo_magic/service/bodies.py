"""JSON bodies on the hot path, encoded once with orjson (the server extra).

FastAPI validates what an endpoint returns against its ``response_model`` again
and encodes it through ``jsonable_encoder`` and ``json.dumps``; an answer the
service built itself needs neither. ``json_response`` encodes it in one pass;
the schema (``response_model``) still documents it. Anything orjson cannot encode
(a lone surrogate, an int over 64 bits, an object) takes FastAPI's own way, so the
bytes a client gets mean the same either way.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from pydantic import BaseModel

try:
    import orjson
except ImportError:  # pragma: no cover - the server extra installs it
    orjson = None  # type: ignore[assignment]

__all__ = ["dumps", "json_response"]

_OPTIONS = 0 if orjson is None else orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON, UTF-8 (NaN and infinities as null)."""
    if orjson is not None:
        try:
            return orjson.dumps(value, option=_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError: what it cannot encode, json does below
            pass
    encoded = jsonable_encoder(value)
    return json.dumps(encoded, separators=(",", ":"), allow_nan=False).encode()


def json_response(content: BaseModel | dict[str, Any], status_code: int = 200) -> Response:
    """A 200 (or ``status_code``) JSON response of a model or a plain dict."""
    body = content.model_dump_json().encode() if isinstance(content, BaseModel) else dumps(content)
    return Response(body, status_code=status_code, media_type="application/json")
