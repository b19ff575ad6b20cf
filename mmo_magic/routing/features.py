"""Text representations for learned routing: prompts in, fixed-size vectors out.

``get_representation(name)`` returns a ``Representation`` with a ``name``, a
``version`` (bumped whenever its outputs change, so a saved router can refuse
vectors it was not trained on), a dimension ``dim`` and
``transform(texts) -> numpy.ndarray`` of float32 rows of shape ``(n, dim)``,
each L2-normalised (an empty text gives a zero row). Transforms need no
fitting and are deterministic across processes and machines: the same text
always gives the same vector.

``"default"`` (also ``"ngrams"``) hashes token unigrams and bigrams (tokens
are words and runs of punctuation) and character 3-5-grams (within token
boundaries) into ``dim`` buckets with a signed hash and sublinear term
frequency (1 + log tf). Tokens and characters are normalised separately and
then mixed, so a long prompt's many character n-grams do not drown its words.
``"words"`` is the token part alone. ``"topic"`` keeps only content words (alphabetic,
three letters or more, not on a short list of function and exam-phrasing words: "which
of the following", "is known as") and their character n-grams: what a prompt is
*about*, not how it is phrased (the task classifier's stem/humanities split reads it).
Long prompts are read at their head and tail
only, where instructions sit, which also keeps a transform under a
millisecond or two.

numpy is imported when a transform runs, never at import time.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import unicodedata
import zlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from ..core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "REPRESENTATIONS",
    "ContentNgrams",
    "HashedNgrams",
    "Representation",
    "get_representation",
]


class Representation(ABC):
    """A fixed, fit-free map from texts to L2-normalised float32 vectors."""

    name: str
    version: str
    dim: int

    @abstractmethod
    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 array of shape ``(len(texts), dim)``, rows L2-normalised."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, dim={self.dim})"
        )


# Words, and runs of punctuation as tokens of their own: ``"""``, ``->``, ``>>>`` and ``=``
# tell code and equations from prose.
_WORD = re.compile(r"\w+|[^\w\s]+", re.UNICODE)
_WORD_SEED, _CHAR_SEED = 0x5EED, 0xC4A2  # crc32 start values: words and characters hash apart
_SPACES = re.compile(r"\s+")


def _normalise(text: str) -> str:
    # NFKC folds full-width and compatibility characters; case carries little task signal.
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


class HashedNgrams(Representation):
    """Hashed word 1-2-grams and character 3-5-grams with sublinear tf (no vocabulary).

    ``word_weight`` is the share of the squared norm given to word features
    (the rest goes to character n-grams).
    """

    HEAD_CHARS: ClassVar[int] = 2000
    TAIL_CHARS: ClassVar[int] = 600

    def __init__(
        self,
        name: str = "default",
        dim: int = 1 << 14,
        word_weight: float = 0.5,
        char_sizes: tuple[int, ...] = (3, 4, 5),
    ) -> None:
        if dim < 2 or dim & (dim - 1):
            raise ConfigError(f"HashedNgrams dim must be a power of two, got {dim}.")
        self.name = name
        self.dim = dim
        self.word_weight = word_weight
        self.char_sizes = char_sizes
        sizes = "".join(str(n) for n in char_sizes)
        # The version names everything that changes outputs.
        self.version = f"hashed-ngrams-2:d{dim}:w{word_weight:g}:c{sizes or '-'}:crc32"

    def _clip(self, text: str) -> str:
        if len(text) > self.HEAD_CHARS + self.TAIL_CHARS:
            return text[: self.HEAD_CHARS] + " " + text[-self.TAIL_CHARS :]
        return text

    def grams(self, text: str) -> tuple[Counter[str], Counter[str]]:
        """The word and character n-gram counts of ``text`` (after normalising)."""
        words = self._words(_normalise(self._clip(text)))
        word_grams: Counter[str] = Counter(words)
        word_grams.update(f"{a} {b}" for a, b in itertools.pairwise(words))
        char_grams: Counter[str] = Counter()
        for word, count in Counter(words).items():
            for gram in self._word_chars(word):
                char_grams[gram] += count
        return word_grams, char_grams

    def _words(self, text: str) -> list[str]:
        """The words of normalised ``text`` that its n-grams are made of."""
        words: list[str] = _WORD.findall(text)
        return words

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one instance per name, words repeat
    def _word_chars(self, word: str) -> tuple[str, ...]:
        """The character n-grams of one word, padded with a space at each end."""
        padded = f" {word} "
        return tuple(padded[i : i + n] for n in self.char_sizes for i in range(len(padded) - n + 1))

    def _hashed(self, grams: Counter[str], seed: int, share: float) -> dict[int, float]:
        """Bucket -> signed sublinear weight, scaled so the block's norm is sqrt(share)."""
        out: dict[int, float] = {}
        mask = self.dim - 1
        for gram, count in grams.items():
            h = zlib.crc32(gram.encode("utf-8"), seed)
            value = 1.0 + math.log(count)
            # The top bit picks the sign: collisions then cancel on average instead of adding up.
            if h & 0x80000000:
                value = -value
            out[h & mask] = out.get(h & mask, 0.0) + value
        norm = math.sqrt(sum(v * v for v in out.values()))
        if norm == 0.0:
            return {}
        scale = math.sqrt(share) / norm
        return {k: v * scale for k, v in out.items()}

    def sparse(self, text: str) -> dict[int, float]:
        """One text's non-zero buckets (before the final L2 normalisation)."""
        return self._sparse(*self.grams(text))

    def _sparse(self, word_grams: Counter[str], char_grams: Counter[str]) -> dict[int, float]:
        row = self._hashed(word_grams, _WORD_SEED, self.word_weight)
        for k, v in self._hashed(char_grams, _CHAR_SEED, 1.0 - self.word_weight).items():
            row[k] = row.get(k, 0.0) + v
        return row

    def analyse(self, text: str) -> tuple[dict[int, float], list[tuple[str, int, float]]]:
        """One text's vector as {bucket: value} (normalised, as ``transform`` gives it) and
        each word unigram and bigram with its bucket and signed value in that vector:
        what a linear model's weights can be read against to explain a decision."""
        word_grams, char_grams = self.grams(text)
        row = self._sparse(word_grams, char_grams)
        norm = math.sqrt(sum(v * v for v in row.values()))
        if norm == 0.0:
            return {}, []
        row = {k: v / norm for k, v in row.items()}
        scale = math.sqrt(self.word_weight) / norm / _block_norm(word_grams)
        terms = []
        for gram, count in word_grams.items():
            h = zlib.crc32(gram.encode("utf-8"), _WORD_SEED)
            value = (1.0 + math.log(count)) * scale
            terms.append((gram, h & (self.dim - 1), -value if h & 0x80000000 else value))
        return row, terms

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if isinstance(texts, str):
            raise TypeError("transform takes a sequence of texts, not one string.")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            row = self.sparse(text)
            if row:
                out[i, list(row)] = list(row.values())
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


# Function words and the phrasing of exam and chat questions: they say how a question is
# asked, not what it is about. Changing this list changes ContentNgrams' outputs: bump
# its version.
_NOT_CONTENT_WORDS = """
    the and but not nor for with from into onto over under about above below between among
    after before during while since until than then that this these those there here where
    when what which who whom whose why how whether are was were been being does did done
    have has had having its can could would should will shall may might must you your
    yours they them their theirs she her hers him his our ours one ones any some all each
    every both either neither such also most more least less very much many few own same
    other others only just even still yet too following true false statement statements
    best likely correct incorrect example examples term terms known called describe
    described description according mean means meant type types kind kinds way ways please
    tell explain give list name something someone thing things
"""
_NOT_CONTENT = frozenset(_NOT_CONTENT_WORDS.split())


class ContentNgrams(HashedNgrams):
    """Hashed content words (uni/bigrams of the words left after dropping function and
    phrasing words, numbers and punctuation) and their character 3-5-grams."""

    def __init__(self, name: str = "topic", dim: int = 1 << 14, word_weight: float = 0.5) -> None:
        super().__init__(name, dim, word_weight, (3, 4, 5))
        self.version = "content-" + self.version

    def _words(self, text: str) -> list[str]:
        return [
            w for w in super()._words(text) if len(w) > 2 and w.isalpha() and w not in _NOT_CONTENT
        ]


def _block_norm(grams: Counter[str]) -> float:
    # The norm of a block before collisions (``_hashed`` scales by the norm after them;
    # the two differ only where grams share a bucket, which is rare and harmless here).
    return math.sqrt(sum((1.0 + math.log(c)) ** 2 for c in grams.values())) or 1.0


def _default() -> Representation:
    return HashedNgrams("default")


def _words() -> Representation:
    return HashedNgrams("words", word_weight=1.0, char_sizes=())


def _topic() -> Representation:
    return ContentNgrams("topic")


# name -> factory. "words" (word and punctuation uni/bigrams only) is three times
# cheaper to compute and classifies tasks as well across sources as "default".
REPRESENTATIONS = {"default": _default, "ngrams": _default, "words": _words, "topic": _topic}


@functools.cache
def get_representation(name: str = "default") -> Representation:
    """The representation called ``name`` (one shared instance per name)."""
    key = name.strip().lower()
    if key not in REPRESENTATIONS:
        raise ConfigError(
            f"Unknown text representation {name!r}.",
            hint=f"Representations: {', '.join(REPRESENTATIONS)}.",
        )
    return REPRESENTATIONS[key]()
