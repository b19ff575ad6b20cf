"""The catalogue, mmo.toml, availability and the errors bad configuration gets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import mmo_magic as mmo
from mmo_magic.core.catalogue import builtin_models
from mmo_magic.core.config import load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_builtin_catalogue_has_current_models_priced_with_context_windows():
    models = {m.name: m for m in builtin_models()}
    for name in (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-5",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-5",
    ):
        m = models[name]
        assert m.priced and m.context_window and m.context_window >= 128_000
        assert m.cost_per_1k_output > m.cost_per_1k_input  # output tokens cost more everywhere
    assert {m.provider for m in models.values()} >= {"openai", "anthropic", "sim"}
    assert all(
        m.description.startswith("SIMULATED") for m in models.values() if m.provider == "sim"
    )


def test_aliases_resolve_and_unknown_names_get_suggestions():
    orc = mmo.Orchestrator(runlog=":memory:")
    assert orc.catalogue.resolve("sonnet").name == "claude-sonnet-4-5"
    assert orc.catalogue.resolve("GPT-4o").name == "gpt-4o"
    with pytest.raises(mmo.UnknownModelError) as info:
        orc.catalogue.resolve("gpt-4o-mni")
    assert "gpt-4o-mini" in info.value.suggestions
    assert "Did you mean 'gpt-4o-mini'" in str(info.value)


def test_missing_key_makes_a_model_unavailable_not_an_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    orc = mmo.Orchestrator(runlog=":memory:")
    gpt = orc.catalogue.resolve("gpt-4o")
    assert not gpt.available and gpt.unavailable_reason == "OPENAI_API_KEY not set"
    assert orc.catalogue.resolve("sim-fast").available
    rows = {r["name"]: r for r in orc.catalogue.rows()}
    assert rows["gpt-4o"]["available"] is False and rows["gpt-4o"][
        "usd_per_1m_input"
    ] == pytest.approx(2.5)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-123456789")
    assert gpt.available


def test_using_a_model_without_its_key_names_the_variable_and_is_recorded(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    orc = mmo.Orchestrator(runlog=":memory:")
    with pytest.raises(mmo.MissingAPIKeyError) as info:
        orc.complete("hello", model="haiku")
    message = str(info.value)
    assert "ANTHROPIC_API_KEY" in message and "os.environ" in message and "\n" not in message
    record = orc.runs.records()[-1]
    assert (record.status, record.model, record.error_type) == (
        "error",
        "claude-haiku-4-5",
        "MissingAPIKeyError",
    )


def test_config_adds_and_overrides_models(tmp_path):
    path = write(
        tmp_path / "mmo.toml",
        """
        default_model = "llama"
        [models.llama]
        provider = "local"
        model_id = "llama3.2"
        base_url = "http://localhost:11434/v1"
        aliases = ["ll"]
        [models.gpt-4o]
        cost_per_1k_input = 0.001
        """,
    )
    orc = mmo.Orchestrator.from_config(path, runlog=":memory:")
    assert orc.default_model == "llama"
    llama = orc.catalogue.resolve("ll")
    assert (llama.provider, llama.model_id, llama.cost_per_1k_input) == ("local", "llama3.2", None)
    assert llama.available  # local servers need no key
    gpt = orc.catalogue.resolve("gpt-4o")
    assert gpt.cost_per_1k_input == 0.001 and gpt.cost_per_1k_output == pytest.approx(0.01)


def test_working_directory_config_overrides_user_config(tmp_path, monkeypatch):
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    monkeypatch.setattr("platformdirs.user_config_dir", lambda *a, **k: str(user_dir))
    write(user_dir / "mmo.toml", 'default_model = "gpt-4o"\n[models.sim-fast]\ntier = 2\n')
    project = tmp_path / "project"
    project.mkdir()
    write(project / "mmo.toml", 'default_model = "sim-echo"\n')
    monkeypatch.chdir(project)
    orc = mmo.Orchestrator.from_config(runlog=":memory:")
    assert orc.default_model == "sim-echo"
    assert orc.catalogue.resolve("sim-fast").tier == 2
    monkeypatch.setenv("MMO_DEFAULT_MODEL", "sim-slow")
    assert mmo.Orchestrator.from_config(runlog=":memory:").default_model == "sim-slow"


def test_malformed_toml_names_file_and_line(tmp_path):
    path = write(tmp_path / "mmo.toml", 'default_model = "x"\n[models.a]\nprovider = \n')
    with pytest.raises(mmo.ConfigError) as info:
        mmo.Orchestrator.from_config(path, runlog=":memory:")
    assert f"{path}:3:" in str(info.value)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            '[models.a]\nprovider = "local"\nmax_tokens = "lots"\n',
            "max_tokens must be an integer, got a string 'lots'",
        ),
        (
            '[models.a]\nprovider = "local"\ncost_per_1k_input = true\n',
            "cost_per_1k_input must be a number",
        ),
        ('[models.a]\nprovider = "local"\naliases = "x"\n', "aliases must be a list of strings"),
        ('[models.a]\nprovder = "local"\n', "Did you mean 'provider'"),
        ('[models.a]\nprovider = "nope"\n', "unknown provider 'nope'"),
        ("[models.a]\nmodel_id = 'x'\n", "needs provider"),
        ("defualt_model = 'x'\n", "Did you mean 'default_model'"),
        ("default_model = 3\n", "default_model must be a string"),
        ("[models.a]\nprovider = 'local'\ncost_per_1k_input = -1\n", "must be >= 0"),
    ],
)
def test_wrong_config_gives_one_clear_config_error(tmp_path, body, fragment):
    path = write(tmp_path / "mmo.toml", body)
    with pytest.raises(mmo.ConfigError) as info:
        mmo.Orchestrator.from_config(path, runlog=":memory:")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_unknown_default_model_fails_at_construction(tmp_path):
    path = write(tmp_path / "mmo.toml", 'default_model = "gtp-4o"\n')
    with pytest.raises(mmo.UnknownModelError, match="gpt-4o"):
        mmo.Orchestrator.from_config(path, runlog=":memory:")


def test_mmo_config_variable_points_at_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "MMO_CONFIG", str(write(tmp_path / "other.toml", 'default_model = "sim-echo"\n'))
    )
    assert mmo.Orchestrator.from_config(runlog=":memory:").default_model == "sim-echo"
    monkeypatch.setenv("MMO_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(mmo.ConfigError, match="not a file"):
        mmo.Orchestrator.from_config(runlog=":memory:")


def test_default_model_prefers_what_has_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    orc = mmo.Orchestrator(runlog=":memory:")
    offline = "smollm2" if orc.catalogue.resolve("smollm2").available else "sim-fast"
    assert orc.default_model == offline
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-123456789")
    assert orc.default_model == "claude-haiku-4-5"


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("timeout_s", float("nan"), "finite number"),
        ("timeout_s", 0, "> 0"),
        ("max_tokens", float("nan"), "whole number"),
        ("max_tokens", True, "whole number"),
        ("max_retries", -1, ">= 0"),
        ("cost_per_1k_input", float("inf"), "finite number"),
        ("temperature", "hot", "finite number"),
        ("stall_timeout_s", -2.0, "> 0"),
    ],
)
def test_model_config_numbers_are_checked(field, value, says):
    with pytest.raises(mmo.ConfigError, match=f"{field} must be .*{says}"):
        mmo.ModelConfig("openai", "gpt-x", **{field: value})


def test_a_lone_fallback_name_is_one_model_not_its_letters():
    assert mmo.ModelConfig("openai", "gpt-x", fallbacks="fast2").fallbacks == ("fast2",)
    with pytest.raises(mmo.ConfigError, match="fallbacks must be model names"):
        mmo.ModelConfig("openai", "gpt-x", fallbacks=["ok", None])


@pytest.mark.parametrize("budget", ["nan", "inf", "-1.0"])
def test_a_budget_that_would_not_limit_is_refused(tmp_path, budget):
    (tmp_path / "mmo.toml").write_text(f"budget = {budget}\n")
    with pytest.raises(mmo.ConfigError, match="budget must be a number of USD >= 0"):
        load_settings([tmp_path / "mmo.toml"])


def test_a_binary_config_file_is_one_clear_error(tmp_path):
    (tmp_path / "mmo.toml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
    with pytest.raises(mmo.ConfigError, match=r"mmo\.toml: not a TOML file"):
        load_settings([tmp_path / "mmo.toml"])


def test_breaker_settings_come_from_mmo_toml(tmp_path):
    (tmp_path / "mmo.toml").write_text("[breaker]\nthreshold = 2\ncooldown_s = 0.5\n")
    orc = mmo.Orchestrator.from_config(tmp_path / "mmo.toml", runlog=":memory:")
    with orc:
        assert (orc.breaker.threshold, orc.breaker.cooldown_s) == (2, 0.5)
    (tmp_path / "mmo.toml").write_text("[breaker]\ncooldown = 0.5\n")
    with pytest.raises(mmo.ConfigError, match="unknown setting 'cooldown'") as caught:
        load_settings([tmp_path / "mmo.toml"])
    assert "cooldown_s" in (caught.value.hint or "")


def test_rate_limits_of_a_model_come_from_mmo_toml(tmp_path):
    (tmp_path / "mmo.toml").write_text(
        "[models.gpt-4o]\nrequests_per_minute = 500\ntokens_per_minute = 30000\n"
    )
    with mmo.Orchestrator.from_config(tmp_path / "mmo.toml", runlog=":memory:") as orc:
        model = orc.catalogue.resolve("gpt-4o")
    assert (model.requests_per_minute, model.tokens_per_minute) == (500, 30000)
    with pytest.raises(mmo.ConfigError, match="requests_per_minute must be > 0"):
        mmo.ModelConfig("openai", "x", requests_per_minute=0)
