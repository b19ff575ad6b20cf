"""Content parts: a message's content as text, images and documents (PDF).

A prompt may be a list of parts, or a message's ``content`` a list of them. They come in
as ``Part`` objects (``Image(...)``, ``Document(...)``), plain strings, OpenAI's part
dicts (``{"type": "image_url", ...}``, ``{"type": "file", ...}``) or Anthropic's content
blocks (``{"type": "image" | "document", "source": {...}}``); ``content_parts`` reads
them all into Parts. Each provider client writes them in its own form (``openai_part``,
``anthropic_block``).

Limits and costs are checked before anything is sent (``check_parts``): a model that
cannot see refuses images, a part over the provider's size limit is refused with the
limit named, and ``part_tokens`` estimates what a part adds to the input (used where a
provider reports no usage, and by the budget's pre-check). Records keep a part's kind,
media type, size and SHA-256 (``Part.record``), never its bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import mimetypes
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import InvalidRequestError

if TYPE_CHECKING:
    from .models import ModelConfig

__all__ = [
    "Document",
    "Image",
    "Part",
    "anthropic_block",
    "check_parts",
    "content_parts",
    "is_part_list",
    "openai_part",
    "part_tokens",
    "parts_digest",
    "parts_record",
]

PartKind = Literal["text", "image", "document"]

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
DOCUMENT_TYPES = ("application/pdf",)
# The first bytes of each media type: a part whose bytes say otherwise is refused, as the
# providers refuse it (Anthropic: "image does not match the provided media type").
_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/pdf": (b"%PDF-",),
}
MB = 1024 * 1024
# Per-part size limits as the providers document them (bytes of the decoded file).
# Anthropic: 5 MB per image, 32 MB per request (PDFs); OpenAI: 20 MB per image, 32 MB of
# file content per request. Others (OpenAI-compatible hosts, local servers) get OpenAI's.
SIZE_LIMITS: dict[str, dict[str, int]] = {
    "anthropic": {"image": 5 * MB, "document": 32 * MB},
    "openai": {"image": 20 * MB, "document": 32 * MB},
}
# Providers that take documents (PDF) as such; the rest take images only (image_url).
_DOCUMENT_PROVIDERS = frozenset({"openai", "anthropic", "sim", "function"})


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of a message's content: text, an image or a document.

    An image or document holds its bytes (``data``, with ``media_type``) or a ``url``
    the provider fetches itself. ``detail`` is OpenAI's image detail ("low", "high",
    "auto"); ``filename`` names a document.
    """

    kind: PartKind
    text: str = ""
    data: bytes | None = None
    url: str | None = None
    media_type: str | None = None
    detail: str | None = None
    filename: str | None = None

    @property
    def size(self) -> int | None:
        """Bytes of the file (None for a URL the provider fetches)."""
        return len(self.data) if self.data is not None else None

    # The SHA-256 of the bytes (of the URL for a URL part; None for text): computed once.
    sha256: str | None = field(default=None, init=False, compare=False)
    # The bytes in base64, made on first use and kept: a race sends one image to each
    # model, and encoding megabytes takes tens of milliseconds.
    _base64: str | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        digest = None
        if self.data is not None:
            digest = hashlib.sha256(self.data).hexdigest()
        elif self.url is not None:
            digest = hashlib.sha256(self.url.encode()).hexdigest()
        object.__setattr__(self, "sha256", digest)

    @property
    def base64(self) -> str:
        if self._base64 is None:
            object.__setattr__(self, "_base64", base64.b64encode(self.data or b"").decode("ascii"))
        assert self._base64 is not None
        return self._base64

    @property
    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.base64}"

    def record(self) -> dict[str, Any]:
        """What a run record keeps of this part: kind, media type, size, SHA-256 (and a URL)."""
        out: dict[str, Any] = {"kind": self.kind, "media_type": self.media_type,
                               "size": self.size, "sha256": self.sha256}  # fmt: skip
        if self.url is not None:
            out["url"] = self.url
        return out

    def __repr__(self) -> str:  # never megabytes of bytes in a repr
        if self.kind == "text":
            return f"Part(text={self.text[:40]!r})"
        where = f"url={self.url!r}" if self.url else f"{self.size} bytes"
        return f"{self.kind.capitalize()}({self.media_type}, {where})"


# -- making parts -------------------------------------------------------------------------------


def Image(source: Any, media_type: str | None = None, *, detail: str | None = None) -> Part:
    """An image part from a path, an http(s) or data URL, bytes, a PIL image or a matplotlib
    figure (saved as PNG). ``media_type`` is guessed from the bytes when not given."""
    if detail is not None and detail not in ("low", "high", "auto"):
        raise InvalidRequestError(f"detail must be 'low', 'high' or 'auto', got {detail!r}.")
    if isinstance(source, Part) and source.kind == "image" and detail is None:
        return source
    data, url, media_type = _from_source(source, media_type, "image")
    return Part("image", data=data, url=url, media_type=media_type, detail=detail)


def Document(source: Any, media_type: str | None = None, *, filename: str | None = None) -> Part:
    """A document part (PDF) from a path, an http(s) or data URL, or bytes."""
    if isinstance(source, Part) and source.kind == "document":
        return source
    data, url, media_type = _from_source(source, media_type, "document")
    name = filename or (Path(source).name if isinstance(source, str | Path) and data else None)
    return Part("document", data=data, url=url, media_type=media_type,
                filename=name or "document.pdf")  # fmt: skip


def _from_source(
    source: Any, media_type: str | None, kind: PartKind
) -> tuple[bytes | None, str | None, str | None]:
    """(bytes, URL, media type) of a part's source: one of bytes and URL is None."""
    data: bytes | None = None
    if isinstance(source, Part):
        return source.data, source.url, source.media_type
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str) and source.startswith(("http://", "https://")):
        return None, source, media_type or _guess_from_name(source)
    elif isinstance(source, str) and source.startswith("data:"):
        media_type, data = _decode_data_url(source, kind)
    elif isinstance(source, str | Path):
        path = Path(source).expanduser()
        if not path.is_file():
            raise InvalidRequestError(
                f"{kind.capitalize()} file {str(source)!r} does not exist.",
                hint="Give a path to a file, an http(s) URL, or the bytes.",
            )
        data = path.read_bytes()
        media_type = media_type or _sniff(data) or _guess_from_name(str(path))
    elif hasattr(source, "savefig"):  # a matplotlib figure
        data = _saved(source.savefig, format="png", bbox_inches="tight")
        media_type = "image/png"
    elif hasattr(source, "save") and hasattr(source, "mode") and hasattr(source, "size"):
        data = _saved(source.save, format="PNG")  # a PIL image
        media_type = "image/png"
    else:
        raise InvalidRequestError(
            f"Cannot make {'an image' if kind == 'image' else 'a document'} from "
            f"{type(source).__name__}.",
            hint="Give a path, an http(s) URL, bytes"
            + (", a PIL image or a matplotlib figure." if kind == "image" else "."),
        )
    media_type = media_type or _sniff(data)
    if media_type is None:
        raise InvalidRequestError(
            f"Cannot tell the media type of this {kind} ({len(data)} bytes).",
            hint=f"Pass media_type=, one of {', '.join(_allowed(kind))}.",
        )
    return data, None, media_type


def _saved(save: Any, **kw: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    save(buffer, **kw)
    return buffer.getvalue()


def _sniff(data: bytes) -> str | None:
    for media_type, prefixes in _MAGIC.items():
        if data.startswith(prefixes):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _guess_from_name(name: str) -> str | None:
    return mimetypes.guess_type(name.split("?")[0])[0]


def _allowed(kind: str) -> tuple[str, ...]:
    return IMAGE_TYPES if kind == "image" else DOCUMENT_TYPES


_DATA_URL = re.compile(r"data:([\w.+/-]+);base64,(.*)", re.DOTALL)


def _decode_data_url(url: str, kind: str) -> tuple[str, bytes]:
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise InvalidRequestError(
            f"A data URL must look like data:<media type>;base64,<data>, got {url[:40]!r}."
        )
    return match.group(1), _b64(match.group(2), kind)


def _b64(text: object, kind: str) -> bytes:
    try:  # strict: what b64decode(validate=True) checks, at twice its speed
        return binascii.a2b_base64(text if isinstance(text, str) else "", strict_mode=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"The {kind}'s data is not valid base64.") from None


# -- reading parts in the providers' forms ------------------------------------------------------


def is_part_list(prompt: Sequence[Any]) -> bool:
    """Whether a list prompt is content parts of one user message (the short form:
    ``["What does this show?", mmo.Image("chart.png")]``) rather than chat messages."""
    return any(
        isinstance(item, str | Part)
        or (isinstance(item, Mapping) and "role" not in item and "type" in item)
        for item in prompt
    )


def content_parts(content: Iterable[Any], where: str) -> tuple[Part, ...]:
    """Parts from a content list: strings, Parts, OpenAI part dicts, Anthropic blocks.

    InvalidRequestError names the item (``where``: e.g. "Message 0") that is none of them.
    """
    out: list[Part] = []
    for i, item in enumerate(content):
        part = _part(item)
        if part is None:
            raise InvalidRequestError(
                f"{where}, part {i}: {item!r:.80} is no content part.",
                hint="Use text, mmo_magic.Image(...), mmo_magic.Document(...), OpenAI's "
                '{"type": "image_url", ...} or Anthropic\'s {"type": "image", "source": ...}.',
            )
        out.append(part)
    return tuple(out)


def _part(item: Any) -> Part | None:
    if isinstance(item, Part):
        return item
    if isinstance(item, str):
        return Part("text", text=item)
    if not isinstance(item, Mapping):
        return None
    kind = item.get("type")
    if kind in ("text", "input_text") and isinstance(item.get("text"), str):
        return Part("text", text=item["text"])
    if kind == "image_url":  # OpenAI: {"image_url": {"url", "detail"}} (or a bare string)
        spec = item.get("image_url")
        spec = {"url": spec} if isinstance(spec, str) else spec
        if isinstance(spec, Mapping) and isinstance(spec.get("url"), str):
            return Image(spec["url"], detail=spec.get("detail"))
        return None
    if kind == "file":  # OpenAI: {"file": {"file_data": data URL, "filename"}}
        spec = item.get("file")
        if isinstance(spec, Mapping) and isinstance(spec.get("file_data"), str):
            data = spec["file_data"]
            if not data.startswith("data:"):
                data = f"data:application/pdf;base64,{data}"
            return Document(data, filename=spec.get("filename"))
        return None
    if kind in ("image", "document"):  # Anthropic: {"source": {"type": "base64" | "url"}}
        source = item.get("source")
        if not isinstance(source, Mapping):
            return None
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            url_part = Part(kind, url=source["url"], media_type=_guess_from_name(source["url"]))
            return url_part
        if source.get("type") == "base64" and isinstance(source.get("media_type"), str):
            data = _b64(source.get("data"), kind)
            return Part(kind, data=data, media_type=source["media_type"],
                        filename=item.get("title") if kind == "document" else None)  # fmt: skip
    return None


# -- writing parts in the providers' forms ------------------------------------------------------


def openai_part(part: Part) -> dict[str, Any]:
    """``part`` as an OpenAI Chat Completions content part."""
    if part.kind == "text":
        return {"type": "text", "text": part.text}
    if part.kind == "image":
        spec: dict[str, Any] = {"url": part.url or part.data_url}
        if part.detail is not None:
            spec["detail"] = part.detail
        return {"type": "image_url", "image_url": spec}
    if part.url is not None:
        raise InvalidRequestError(
            "OpenAI takes a document as its bytes, not a URL.",
            hint="Download it and give mmo_magic.Document(the bytes or a path).",
        )
    return {"type": "file", "file": {"filename": part.filename or "document.pdf",
                                     "file_data": part.data_url}}  # fmt: skip


def anthropic_block(part: Part) -> dict[str, Any]:
    """``part`` as an Anthropic Messages content block."""
    if part.kind == "text":
        return {"type": "text", "text": part.text}
    source: dict[str, Any] = (
        {"type": "url", "url": part.url}
        if part.url is not None
        else {"type": "base64", "media_type": part.media_type, "data": part.base64}
    )
    return {"type": part.kind, "source": source}


# -- checks, records, tokens --------------------------------------------------------------------


def media_parts(messages: Iterable[Any]) -> list[Part]:
    """The image and document parts of ``messages`` (Messages), in order."""
    return [p for m in messages for p in m.parts if p.kind != "text"]


def check_parts(config: ModelConfig, messages: Iterable[Any]) -> None:
    """InvalidRequestError, before anything is sent, for a part ``config`` cannot take:
    an image for a model that cannot see, a document where the provider takes none, a
    media type the providers refuse, or a part over the provider's size limit."""
    limits = SIZE_LIMITS.get(config.provider, SIZE_LIMITS["openai"])
    for part in media_parts(messages):
        if not config.sees:
            raise InvalidRequestError(
                f"Model {config.name!r} cannot see: it takes text only, and this prompt has "
                f"{'an image' if part.kind == 'image' else 'a document'}.",
                hint="Use a model that takes images, e.g. gpt-4o-mini, claude-haiku-4-5 "
                "(or sim-fast offline), or leave the image out.",
            )
        if part.kind == "document" and config.provider not in _DOCUMENT_PROVIDERS:
            raise InvalidRequestError(
                f"Model {config.name!r} (provider {config.provider}) takes no documents "
                "(PDF): its wire has images only.",
                hint="Send the PDF to an OpenAI or Anthropic model, or send its pages as images.",
            )
        if part.media_type not in _allowed(part.kind) and part.data is not None:
            raise InvalidRequestError(
                f"A {part.kind} of type {part.media_type!r} is not accepted.",
                hint=f"Use one of {', '.join(_allowed(part.kind))}.",
            )
        if part.data is not None and (sniffed := _sniff(part.data)) != part.media_type:
            raise InvalidRequestError(
                f"The {part.kind}'s bytes are not {part.media_type} "
                f"({'they look like ' + sniffed if sniffed else 'unrecognised'}).",
                hint="Leave media_type out to have it read from the bytes.",
            )
        limit = limits[part.kind]
        if part.size is not None and part.size > limit:
            raise InvalidRequestError(
                f"A {part.kind} of {part.size / MB:.1f} MB is over {config.provider}'s limit "
                f"of {limit // MB} MB per {part.kind} (model {config.name!r}).",
                hint="Make it smaller (resize or compress the image, split the PDF).",
            )


def parts_record(messages: Iterable[Any]) -> str | None:
    """The run record's ``parts`` column: JSON of each image and document's record."""
    import json

    records = [p.record() for p in media_parts(messages)]
    return json.dumps(records) if records else None


def parts_digest(messages: Iterable[Any]) -> str:
    """A hash of every media part's hash: what a cache key adds for them ("" if none)."""
    hashes = [f"{p.kind}:{p.media_type}:{p.sha256}:{p.detail}" for p in media_parts(messages)]
    return hashlib.sha256("|".join(hashes).encode()).hexdigest() if hashes else ""


# An image whose size is unknown (a URL) is counted as 1024 x 1024.
_UNKNOWN_SIZE = (1024, 1024)
_TOKENS_PER_PDF_PAGE = 1500  # Anthropic's own range is 1,500-3,000 text tokens a page
_PAGE = re.compile(rb"/Type\s*/Page(?![a-z])")


def part_tokens(part: Part, provider: str) -> int:
    """Estimated input tokens of an image or document part on ``provider``.

    Anthropic counts an image as width x height / 750 after scaling it into 1568 px;
    OpenAI (and the rest, estimated so) as 85 plus 170 per 512 px tile after scaling
    into 2048 px and then to 768 px on the short side (85 in all at detail "low"). A PDF
    counts ~1,500 tokens a page (pages counted in the file).
    """
    if part.kind == "text":
        return 0
    if part.kind == "document":
        pages = len(_PAGE.findall(part.data)) if part.data else 1
        return max(1, pages) * _TOKENS_PER_PDF_PAGE
    width, height = (image_size(part.data) if part.data else None) or _UNKNOWN_SIZE
    if provider == "anthropic":
        scale = min(1.0, 1568 / max(width, height), math.sqrt(1_150_000 / (width * height)))
        return max(1, round(width * scale * height * scale / 750))
    if part.detail == "low":
        return 85
    fit = min(1.0, 2048 / max(width, height))
    scale = fit * min(1.0, 768 / (min(width, height) * fit))
    tiles = math.ceil(width * scale / 512) * math.ceil(height * scale / 512)
    return 85 + 170 * tiles


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from a PNG, GIF, JPEG or WebP header; None if unreadable."""
    try:
        if data.startswith(b"\x89PNG"):
            w, h = struct.unpack(">II", data[16:24])
            return w, h
        if data.startswith(b"GIF8"):
            w, h = struct.unpack("<HH", data[6:10])
            return w, h
        if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                return w, int.from_bytes(data[27:30], "little") + 1
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if data.startswith(b"\xff\xd8"):
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    i += 1
                    continue
                marker = data[i + 1]
                length = int.from_bytes(data[i + 2 : i + 4], "big")
                if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                              0xCE, 0xCF):  # fmt: skip
                    h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                    return w, h
                i += 2 + length
    except (struct.error, IndexError):
        return None
    return None
