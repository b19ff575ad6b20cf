"""A batch's items: loaded from a DataFrame, a list of dicts or a file; the shipped question set."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["eval_questions", "load_items"]


def load_items(data: Any) -> list[dict[str, Any]]:
    """A DataFrame, a list of dicts, or a CSV / JSONL / Parquet path, as a list of dicts."""
    if isinstance(data, str | os.PathLike):
        path = Path(data).expanduser()
        suffix = path.suffix.lower()
        if not path.is_file():
            raise ConfigError(
                f"No batch data file at {str(path)!r}.",
                hint="Check the path (relative paths start from the working directory, "
                f"{os.getcwd()!r}).",
            )
        if suffix in (".jsonl", ".ndjson", ".json"):
            with path.open(encoding="utf-8") as lines:
                items = [json.loads(line) for line in lines if line.strip()]
        elif suffix in (".csv", ".tsv", ".parquet", ".pq"):
            import pandas as pd

            if suffix == ".csv":
                frame = pd.read_csv(path, keep_default_na=False)
            elif suffix == ".tsv":
                frame = pd.read_csv(path, sep="\t", keep_default_na=False)
            else:
                frame = pd.read_parquet(path)
            items = frame.to_dict("records")
        else:
            raise ConfigError(
                f"Cannot read batch data from {path.name!r}.",
                hint="Use a .csv, .jsonl or .parquet file, a DataFrame or a list of dicts.",
            )
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):
        columns = [str(c) for c in data.columns]
        twice = sorted({c for c in columns if columns.count(c) > 1})
        if twice:  # to_dict would keep one of each silently
            raise ConfigError(
                f"The batch DataFrame has column {twice[0]!r} more than once.",
                hint="Rename or drop the duplicates (df.loc[:, ~df.columns.duplicated()]).",
            )
        items = data.to_dict("records")
    elif isinstance(data, Iterable) and not isinstance(data, Mapping):
        items = list(data)
    else:
        raise ConfigError(
            f"Batch data must be a DataFrame, a list of dicts or a file path, "
            f"not {type(data).__name__}."
        )
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ConfigError(f"Batch item {i} is a {type(item).__name__}, not a dict of columns.")
    return [{str(k): v for k, v in item.items()} for item in items]


def eval_questions() -> pd.DataFrame:
    """The question set shipped for evaluation notebooks: id, task, question, reference.

    30 short items across eight task types (maths, reasoning, facts, code,
    extraction, translation, summaries, writing), written for this project.
    """
    import importlib.resources

    import pandas as pd

    source = importlib.resources.files("mmo_magic") / "data" / "eval_questions.csv"
    with source.open("r", encoding="utf-8") as f:
        return pd.read_csv(f, keep_default_na=False)
