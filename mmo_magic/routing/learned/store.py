"""Router files: one JSON document, arrays inside as base64 little-endian numbers.

Loading one can't run code: it is parsed with ``json`` and arrays are read
with ``numpy.frombuffer`` into fixed dtypes (no pickle anywhere). The file
records its format and version, the models, the representation (name,
version, dimension), the training set's size, date and source, the
predictor, the knob and the held-out figures behind it, and a SHA-256
checksum over everything else. A file that is not JSON, is another
format, has another version, fails its checksum or has arrays of the wrong
shape is refused with one ``ConfigError``.

The checksum catches corruption and hand edits; it is not a signature (anyone
can recompute it). The file holds the training prompts (for "nearest
training prompts" explanations): share it like the data it was learned from.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ...core.errors import ConfigError
from ..features import get_representation
from .predictors import Fitted, PredictorSpec, SparseRows

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FORMAT", "FORMAT_VERSION", "read_router", "write_router"]

FORMAT = "mmo_magic.learned_router"
FORMAT_VERSION = 1
_DTYPES = {"float32": "<f4", "float64": "<f8", "int32": "<i4", "int64": "<i8"}


def _pack(array: np.ndarray, dtype: str) -> dict[str, Any]:
    import numpy as np

    data = np.ascontiguousarray(array, dtype=_DTYPES[dtype])
    return {
        "dtype": dtype,
        "shape": list(data.shape),
        "data": base64.b64encode(data.tobytes()).decode(),
    }


def _unpack(doc: dict[str, Any], name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    import numpy as np

    entry = doc["arrays"][name]
    dtype = _DTYPES[entry["dtype"]]
    got = tuple(int(x) for x in entry["shape"])
    if len(got) != len(shape) or any(
        w is not None and w != g for w, g in zip(shape, got, strict=True)
    ):
        raise ValueError(f"array {name} has shape {got}, expected {shape}")
    raw = base64.b64decode(entry["data"], validate=True)
    array = np.frombuffer(raw, dtype=dtype)
    if array.size != math.prod(got):
        raise ValueError(f"array {name} holds {array.size} numbers, its shape says {got}")
    return array.reshape(got).copy()


def _checksum(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
    )
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _number(x: float) -> float | None:
    return x if math.isfinite(x) else None


def write_router(state: Mapping[str, Any], path: str | Path) -> None:
    """Write a router's ``state`` (``LearnedRouter.state()``: its constructor's arguments)
    to ``path`` (see the module docstring for the format)."""
    router = SimpleNamespace(**state)
    fitted = router.fitted
    rep = router.representation
    arrays = {
        "indptr": _pack(router.vectors.indptr, "int64"),
        "indices": _pack(router.vectors.indices, "int32"),
        "vectors": _pack(router.vectors.data, "float32"),
        "quality": _pack(router.quality, "float32"),
        "mean": _pack(fitted.mean, "float64"),
        "prices": _pack(router.prices, "float64"),
    }
    if fitted.coef is not None and fitted.col_mean is not None:
        arrays["coef"] = _pack(fitted.coef, "float64")
        arrays["col_mean"] = _pack(fitted.col_mean, "float64")
    if fitted.targets is not None:
        arrays["targets"] = _pack(fitted.targets, "float32")
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "saved": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": list(router.models),
        "representation": {"name": rep.name, "version": rep.version, "dim": rep.dim},
        "training": dict(router.training),
        "predictor": {"kind": fitted.spec.kind, "value": fitted.spec.value,
                      "grand_mean": fitted.grand_mean},
        "knob": router.knob,
        "target": router.target,
        "best_model": router.best_model,
        "heldout": {k: _number(float(v)) for k, v in router.heldout.items()},
        "prompts": list(router.prompts),
        "arrays": arrays,
    }  # fmt: skip
    doc["checksum"] = _checksum(doc)
    Path(path).write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


def read_router(path: str | Path) -> dict[str, Any]:
    """The state (``LearnedRouter``'s constructor arguments) saved at ``path``;
    ``ConfigError`` for anything but an intact router file of this format version whose
    representation is available in the same version."""
    where = str(path)
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"No router file at {where}.") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"{where} is not a router file (not readable JSON: {exc}).",
            hint="Load a file written by router.save().",
        ) from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(
            f"{where} is not a learned router file (its format is "
            f"{doc.get('format') if isinstance(doc, dict) else type(doc).__name__!r}).",
            hint="Load a file written by router.save().",
        )
    if doc.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"{where} is a learned router file of format version {doc.get('format_version')!r}; "
            f"this mmo_magic reads version {FORMAT_VERSION}.",
            hint="Learn the router again with this version (br.learn_router()).",
        )
    if doc.get("checksum") != _checksum(doc):
        raise ConfigError(
            f"{where} fails its checksum: it was changed or damaged after it was saved.",
            hint="Use the file router.save() wrote, or learn the router again.",
        )
    rep_info = doc.get("representation")
    if not isinstance(rep_info, dict) or not {"name", "version", "dim"} <= rep_info.keys():
        raise ConfigError(f"{where} is a damaged learned router file (no representation).")
    try:
        representation = get_representation(str(rep_info["name"]))
    except ConfigError as exc:
        raise ConfigError(
            f"{where} needs the text representation {rep_info['name']!r}, "
            "which this install does not have.",
            hint="Install the mmo_magic version it was learned with, or learn the router again.",
        ) from exc
    if representation.version != rep_info["version"] or representation.dim != rep_info["dim"]:
        raise ConfigError(
            f"{where} was learned on the {rep_info['name']!r} representation version "
            f"{rep_info['version']!r}; this install has version {representation.version!r}.",
            hint="Learn the router again on this install (its prompt vectors would not match).",
        )
    try:
        models = [str(m) for m in doc["models"]]
        n, k = len(doc["prompts"]), len(models)
        vectors = SparseRows(
            _unpack(doc, "indptr", (n + 1,)), _unpack(doc, "indices", (None,)),
            _unpack(doc, "vectors", (None,)), representation.dim,
        )  # fmt: skip
        if (
            len(vectors.indices) != len(vectors.data)
            or vectors.indptr[0] != 0
            or vectors.indptr[-1] != len(vectors.data)
            or (len(vectors.indptr) > 1 and (vectors.indptr[1:] < vectors.indptr[:-1]).any())
            or (
                len(vectors.indices)
                and (vectors.indices.min() < 0 or vectors.indices.max() >= representation.dim)
            )
        ):
            raise ValueError("the prompt vectors are inconsistent")
        spec_doc = doc["predictor"]
        spec = PredictorSpec(str(spec_doc["kind"]), float(spec_doc["value"]))
        if spec.kind not in ("ridge", "knn", "mean"):
            raise ValueError(f"unknown predictor {spec.kind!r}")
        fitted = Fitted(spec, _unpack(doc, "mean", (k,)))
        if spec.kind == "ridge":
            fitted.coef = _unpack(doc, "coef", (n, k))
            fitted.col_mean = _unpack(doc, "col_mean", (n,))
            fitted.grand_mean = float(spec_doc["grand_mean"])
        elif spec.kind == "knn":
            fitted.targets = _unpack(doc, "targets", (n, k)).astype(float)
        heldout = {str(a): (math.nan if b is None else float(b)) for a, b in doc["heldout"].items()}
        return dict(
            models=models, representation=representation, vectors=vectors,
            prompts=[str(p) for p in doc["prompts"]],
            quality=_unpack(doc, "quality", (n, k)).astype(float), fitted=fitted,
            prices=_unpack(doc, "prices", (k,)), knob=float(doc["knob"]),
            target=str(doc.get("target") or ""), heldout=heldout,
            best_model=doc.get("best_model"), training=dict(doc.get("training") or {}),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"{where} is a damaged learned router file ({exc}).",
            hint="Use the file router.save() wrote, or learn the router again.",
        ) from exc
