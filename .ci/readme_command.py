"""Print one of README's two quick-start commands: `main` (the demo) or `tests`.

They are the first two ```bash blocks under "## Quick start", in that order.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def quick_start_commands(text: str) -> dict[str, str]:
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.+?)\n```", section, flags=re.DOTALL)
    if len(blocks) < 2:
        raise SystemExit("README's Quick start lost its two ```bash commands")
    return {"main": blocks[0].strip(), "tests": blocks[1].strip()}


if __name__ == "__main__":
    print(quick_start_commands(README.read_text(encoding="utf-8"))[sys.argv[1]])
