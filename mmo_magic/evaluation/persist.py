"""A batch result that outlives the kernel: ``br.save(path)`` and ``load_batch(path)``.

``save`` writes a folder: one Parquet file per table (``items``, ``rows``,
``judgements``, ``grades``, ``scores``) and ``batch.json`` with the rest (the
models and judges, the spec as JSON values, the models' prices, each item's
rendered prompt, the scorers' names and how they count failures, the costs).
Nothing is pickled: a saved batch is read back by any Parquet and JSON reader,
and loading one runs no code from it. Scorer functions are not saved (their
scores are).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from .result import BatchResult

__all__ = ["read_saved", "save_batch"]

FORMAT = "mmo_magic.batch/1"
_TABLES = ("items", "rows", "judgements", "grades", "scores")


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Parquet rows as plain Python values: missing is None, whole numbers are ints."""
    out = []
    for record in frame.astype(object).to_dict("records"):
        clean: dict[str, Any] = {}
        for key, value in record.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                clean[str(key)] = None
            elif hasattr(value, "item") and not isinstance(value, str | bytes):
                clean[str(key)] = value.item()  # a numpy scalar
            else:
                clean[str(key)] = value
        out.append(clean)
    return out


def save_batch(br: BatchResult, path: str | os.PathLike[str]) -> Path:
    """Write ``br`` into the folder ``path`` (made if missing; its files are replaced)."""
    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    tables: Mapping[str, list[dict[str, Any]]] = {
        "items": br.items, "rows": [dict(r) for r in br.rows], "judgements": br.judgements,
        "grades": br.grades, "scores": br.scores,
    }  # fmt: skip
    for name, records in tables.items():
        try:
            _frame(list(records)).to_parquet(folder / f"{name}.parquet", index=False)
        except (ValueError, TypeError) as exc:  # pyarrow: a column of mixed Python objects
            raise ConfigError(
                f"Can't save the batch's {name} as Parquet: {exc}",
                hint="Give the items plain columns (text, numbers, booleans) and save again.",
            ) from exc
    meta = {
        "format": FORMAT, "models": br.models, "judges": br.judges,
        "judge_mode": br.judge_mode, "group_id": br.group_id, "epochs": br.epochs,
        "worst_case_cost": br.worst_case_cost, "judge_cost": br.judge_cost,
        "prompts": br.prompts, "scorers": br.scorers, "spec": br.spec, "prices": br.prices,
    }  # fmt: skip
    text = json.dumps(meta, indent=1, ensure_ascii=False, default=str)
    (folder / "batch.json").write_text(text, encoding="utf-8")
    return folder


def read_saved(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``br.save(path)`` wrote in the folder ``path``, as ``BatchResult``'s arguments
    (``load_batch`` builds the result from them)."""
    import pandas as pd

    folder = Path(path).expanduser()
    meta_file = folder / "batch.json"
    if not meta_file.is_file():
        raise ConfigError(
            f"No saved batch in {str(folder)!r} (batch.json is missing).",
            hint="Pass the folder that br.save(path) wrote.",
        )
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{meta_file} is not a saved batch of this version ({FORMAT}).")
    tables = {name: _records(pd.read_parquet(folder / f"{name}.parquet")) for name in _TABLES}
    rows = tables["rows"]
    for row in rows:
        for name in ("item", "epoch", "attempts"):
            if row.get(name) is not None:
                row[name] = int(row[name])
        for name in ("input_tokens", "output_tokens"):
            if row.get(name) is not None:
                row[name] = int(row[name])
        row["cached"], row["resumed"] = bool(row.get("cached")), bool(row.get("resumed"))
    for table in ("judgements", "grades", "scores"):
        for entry in tables[table]:
            entry["item"] = int(entry["item"])
            if "epoch" in entry and entry["epoch"] is not None:
                entry["epoch"] = int(entry["epoch"])
    return dict(
        items=tables["items"], models=list(meta["models"]), rows=rows,
        group_id=meta["group_id"], judges=list(meta["judges"]), judge_mode=meta["judge_mode"],
        judgements=tables["judgements"], grades=tables["grades"],
        worst_case_cost=meta["worst_case_cost"], judge_cost=meta["judge_cost"],
        prompts=list(meta["prompts"]), scores=tables["scores"], scorers=list(meta["scorers"]),
        epochs=int(meta["epochs"]), spec=dict(meta["spec"]), prices=dict(meta["prices"]),
    )  # fmt: skip
