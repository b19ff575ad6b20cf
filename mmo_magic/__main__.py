"""``python -m mmo_magic demo``: run the quick-start notebook in a kernel and report.

The main job, headless: a newcomer's first check that everything works,
offline, on the embedded model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


def _text_of(output: Any) -> str:
    """An output as a terminal shows it: its text/plain form (never Markdown or HTML markup)."""
    if "text" in output:
        return str(output["text"])
    data = output.get("data", {})
    return str(data.get("text/plain") or data.get("text/markdown") or "")


def _join_streams(outputs: list[Any]) -> list[str]:
    """Each output's text, with consecutive stream pieces (a streamed print) joined."""
    shown: list[str] = []
    previous_was_stream = False
    for output in outputs:
        text = _text_of(output)
        is_stream = output.get("output_type") == "stream"
        if is_stream and previous_was_stream:
            shown[-1] += text
        else:
            shown.append(text)
        previous_was_stream = is_stream
    return [text for text in shown if text.strip()]


def demo(notebook: Path, save: Path | None) -> int:
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError:
        print(
            "The demo needs the notebook extra: pip install 'mmo_magic[notebook]'", file=sys.stderr
        )
        return 2
    if not notebook.is_file():
        print(f"No notebook at {notebook} (run from a clone of the repository).", file=sys.stderr)
        return 2
    nb = nbformat.read(notebook, as_version=4)
    print(f"Running {notebook.name} in a Python kernel…\n")
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=False)
    try:
        client.execute(cwd=str(notebook.parent))
    except Exception as exc:  # a failing cell: show which, briefly
        print(f"The notebook failed: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        shown = _join_streams(cell.get("outputs", []))
        if not shown:
            continue
        print(f"In  │ {cell.source.splitlines()[0]}")
        for text in shown:
            for line in text.rstrip().splitlines()[:25]:
                print(f"Out │ {line}")
        print()
    if save is not None:
        nbformat.write(nb, save)
        print(f"Saved the executed notebook to {save}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmo_magic")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("demo", help="run the quick-start notebook and print what happened")
    run.add_argument("--notebook", type=Path, default=NOTEBOOK)
    run.add_argument("--save", type=Path, default=None, help="write the executed notebook here")
    args = parser.parse_args(argv)
    return demo(args.notebook, args.save)


if __name__ == "__main__":
    sys.exit(main())
