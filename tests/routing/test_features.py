"""Text representations (routing/features.py): the stable API the learned routers build on."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from mmo_magic.core.errors import ConfigError
from mmo_magic.routing.features import HashedNgrams, Representation, get_representation

TEXTS = [
    "Write a Python function to reverse a list",
    "Solve for x: 3x + 5 = 20",
    "",
    "Écris un poème sur la mer 🌊",
    "x" * 50_000,
]


def test_default_representation_shape_dtype_and_norms() -> None:
    rep = get_representation()
    assert isinstance(rep, Representation)
    assert rep.name == "default" and rep.version and rep.dim > 0
    out = rep.transform(TEXTS)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), rep.dim)
    norms = np.linalg.norm(out, axis=1)
    assert np.allclose(norms[[0, 1, 3, 4]], 1.0, atol=1e-5)
    assert norms[2] == 0.0  # empty text: a zero row, never NaN
    assert rep.transform([]).shape == (0, rep.dim)


def test_transform_is_deterministic_across_processes() -> None:
    rep = get_representation("default")
    here = rep.transform(TEXTS[:2])
    code = (
        "import sys, numpy as np; from mmo_magic.routing.features import get_representation; "
        "np.save(sys.stdout.buffer, get_representation().transform(sys.argv[1:]))"
    )
    # A different hash seed would change str hashes: the representation must not depend on them.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(
        [sys.executable, "-c", code, *TEXTS[:2]], capture_output=True, check=True, env=env
    )
    there = np.load(io.BytesIO(done.stdout), allow_pickle=False)
    assert np.array_equal(here, there)


def test_similar_prompts_are_closer_than_different_ones() -> None:
    a, b, c = get_representation().transform(
        [
            "Write a Python function that sorts a list of numbers",
            "Write a Python function that reverses a string",
            "Compose a sonnet about autumn leaves falling",
        ]
    )
    assert float(a @ b) > float(a @ c)


def test_unknown_name_and_bad_input_are_clear() -> None:
    with pytest.raises(ConfigError, match="Unknown text representation 'nope'"):
        get_representation("nope")
    with pytest.raises(TypeError, match="sequence of texts"):
        get_representation().transform("one string")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="power of two"):
        HashedNgrams(dim=1000)


def test_version_names_what_changes_outputs() -> None:
    assert HashedNgrams(dim=1 << 12).version != HashedNgrams(dim=1 << 13).version
    assert get_representation("ngrams").version == get_representation("default").version


def test_the_topic_representation_reads_subjects_not_phrasing() -> None:
    topic = get_representation("topic")
    assert topic.version.startswith("content-") and topic.version != get_representation().version
    # Exam and chat phrasing, numbers and punctuation carry no features of their own ...
    phrased, bare = topic.transform(
        ["Which of the following is true of the 3 mitochondria?", "mitochondria"]
    )
    assert np.array_equal(phrased, bare)
    assert not topic.transform(["Which of the following is true?"]).any()
    # ... and word pieces link related words a word model sees as unrelated.
    a, b, c = topic.transform(["mitochondrial membranes", "the mitochondria", "tariffs on trade"])
    assert float(a @ b) > 0.2 > float(a @ c)
