"""Thumbnails of a prompt's images and documents, for ``%%mmo``'s output and race panels.

Each image becomes a small ``<img>`` with a data URL, so a saved notebook keeps it without
the file. With PIL installed the image is shrunk to ``MAX_SIDE`` pixels first (a few KB);
without it, an image up to ``MAX_INLINE`` bytes is inlined as it is and drawn small by CSS,
and a bigger one is named, not inlined (a notebook should not grow by megabytes). A URL
image is named by its URL (a viewer of the saved notebook would fetch it otherwise), and a
document by its file name and size.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

from ..core.parts import Part

__all__ = ["media_parts", "thumbnails_html", "thumbnails_text"]

MAX_SIDE = 96  # pixels of a thumbnail's longer side
MAX_INLINE = 256 * 1024  # bytes of an image inlined unshrunk when PIL is not installed


def media_parts(prompt: Any) -> list[Part]:
    """The images and documents of a short-form prompt (``["text", mmo.Image(...)]``)."""
    if isinstance(prompt, str):
        return []
    return [p for p in prompt if isinstance(p, Part) and p.kind in ("image", "document")]


def thumbnails_html(parts: Sequence[Part]) -> str:
    """A row of thumbnails (images) and labels (documents, URLs, images too big to inline)."""
    items = []
    for part in parts:
        label = html.escape(_label(part))
        src = _thumb_src(part) if part.kind == "image" else None
        if src is not None:
            items.append(
                f'<img class="mmo-thumb" src="{src}" alt="{label}" title="{label}" '
                f'style="max-width:{MAX_SIDE}px;max-height:{MAX_SIDE}px;margin:2px 4px 2px 0;'
                f'vertical-align:middle;border:1px solid var(--jp-border-color1, #bdbdbd)">'
            )
        else:
            items.append(f'<span class="mmo-attachment" style="margin-right:8px">{label}</span>')
    if not items:
        return ""
    return f'<div class="mmo-thumbs" style="font-size:0.85em">{"".join(items)}</div>'


def thumbnails_text(parts: Sequence[Part]) -> str:
    """One line naming what the prompt carried, for a terminal and text/plain."""
    return "attached: " + "; ".join(_label(p) for p in parts) if parts else ""


def _label(part: Part) -> str:
    if part.url is not None:
        return f"{part.kind} {part.url}"
    name = f" {part.filename}" if part.filename else ""
    return f"{part.kind}{name} {part.media_type} {_bytes(part.size or 0)}"


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.0f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def _thumb_src(part: Part) -> str | None:
    if part.data is None:
        return None
    small = _shrunk(part.data)
    if small is not None:
        return "data:image/png;base64," + base64.b64encode(small).decode("ascii")
    return part.data_url if len(part.data) <= MAX_INLINE else None


def _shrunk(data: bytes) -> bytes | None:
    """A PNG of at most MAX_SIDE pixels a side, or None without PIL (or bytes it can't read)."""
    try:
        from PIL import Image as PILImage
    except ImportError:
        return None
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            out = io.BytesIO()
            image.save(out, format="PNG")
            return out.getvalue()
    except (OSError, ValueError):
        return None
