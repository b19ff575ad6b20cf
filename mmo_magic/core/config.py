"""Reading mmo.toml: models to add or override, and the default model.

Files are read in this order, later ones overriding earlier ones:
the user config directory's ``mmo.toml``, then ``mmo.toml`` in the working
directory. ``MMO_CONFIG=path`` replaces both. Example::

    default_model = "claude-haiku-4-5"
    runlog = "runs.sqlite3"            # where the run log lives (":memory:" for none)
    cache = true                       # the response cache: true, false, or a file path
    budget = 5.00                      # USD this orchestrator may spend

    [routing]
    default = "task"                   # the router model="auto" uses
    [routing.tasks]                    # TaskRouter: task -> models, in preference order
    coding = ["claude-sonnet-4-5", "gpt-5"]
    [routing.learned.mine]             # a learned router (router.save(...)), used as
    path = "routers/mine.json"         # route="mine", %%mmo auto -r mine, model="auto:mine";
                                       # a relative path is from this file's directory

    [models.gpt-4o]                    # override a built-in model's fields
    cost_per_1k_input = 0.0025

    [models.llama]                     # add a local OpenAI-compatible server
    provider = "local"
    model_id = "llama3.2"
    base_url = "http://localhost:11434/v1"

    [server]                           # mmo-serve (mmo_magic.service)
    host = "127.0.0.1"                 # anything but loopback needs client keys
    port = 8000
    keys_env = "MY_SERVICE_KEYS"       # a variable holding key1,key2 (besides MMO_SERVER_KEYS)
    max_body_bytes = 1000000           # larger request bodies get 413
    max_tokens_cap = 4096              # a request asking for more max_tokens gets 400
    cors_origins = ["https://app.example.com"]
    graceful_shutdown_s = 10           # how long in-flight requests may finish on shutdown
    models = ["gpt-*", "claude-*", "auto:*"]  # what the gateway serves (globs); default: all
                                       # available but the embedded model
    keys_db = "keys.sqlite3"           # client keys and spend (default: the run log's file)
    metrics = "admin"                  # GET /metrics: "admin" (default), "public" or "off"
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .models import PROVIDERS, ModelConfig

__all__ = [
    "ENVIRONMENT",
    "ServerSettings",
    "Settings",
    "cache_from_env",
    "config_paths",
    "default_cache_path",
    "default_runlog_path",
    "load_settings",
    "model_from_dict",
]

# Every MMO_* variable the package reads, and what it means. Each is read in one
# function of this module (or, for the two that belong to one component alone,
# beside that component: MMO_EMBEDDED_MODEL in core.local_model, MMO_SERVER_KEYS
# in the service).
ENVIRONMENT = {
    "MMO_CONFIG": "a mmo.toml to read instead of the user's and the working directory's",
    "MMO_DEFAULT_MODEL": "the default model, over mmo.toml's default_model",
    "MMO_RUNLOG": "the run log's file (':memory:' keeps it in memory only)",
    "MMO_CACHE": "the response cache: off/0/false, on/1/true, or its file",
    "MMO_EMBEDDED_MODEL": "a .gguf file for the embedded model, instead of the shipped one",
    "MMO_SERVER_KEYS": "comma-separated client keys mmo-serve accepts",
}
_OFF = ("off", "0", "false", "no")
_ON = ("on", "1", "true", "yes")

_TOP_LEVEL_KEYS = (
    "default_model",
    "runlog",
    "models",
    "cache",
    "budget",
    "routing",
    "server",
    "breaker",
    "concurrency",
)
_BREAKER_KEYS = ("threshold", "cooldown_s", "max_cooldown_s", "backoff")
_ROUTING_KEYS = ("default", "tasks", "learned")
_LEARNED_KEYS = ("path",)
# A learned router's name is typed after "auto:" and "-r": one word, no spaces or colons.
_ROUTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_FIELD_TYPES = typing.get_type_hints(ModelConfig)
_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass
class ServerSettings:
    """The ``[server]`` table: how ``mmo-serve`` listens and what it accepts.

    Client keys are never written in a config file: ``keys_env`` names an
    environment variable holding them (comma-separated), read beside
    ``MMO_SERVER_KEYS``.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    keys_env: str | None = None
    max_body_bytes: int = 1_000_000
    max_tokens_cap: int = 4096
    cors_origins: tuple[str, ...] = ()
    # Host header values served besides the loopback names: "example.com", "example.com:8000"
    # or "*" (any). Without client keys only these and loopback; with keys, checked if given.
    allowed_hosts: tuple[str, ...] = ()
    graceful_shutdown_s: float = 10.0
    # What the gateway serves and lists (globs over names, aliases and routers: "auto:*");
    # None serves every available model except the embedded one (it loads into the process).
    models: tuple[str, ...] | None = None
    # The SQLite file of client keys and their spend; None: the run log's file.
    keys_db: str | None = None
    # GET /metrics (Prometheus): "admin" (server and admin keys), "public" or "off".
    metrics: str = "admin"
    # [server.deployments] NAME = ["model-a", "model-b"]: one name served by several
    # configured models (the least busy first, failing over to the others).
    deployments: dict[str, tuple[str, ...]] = field(default_factory=dict)


_SERVER_TYPES = typing.get_type_hints(ServerSettings)
# Settings that must be positive: a zero port, body limit or cap would refuse everything.
_SERVER_POSITIVE = ("port", "max_body_bytes", "max_tokens_cap")


@dataclass
class Settings:
    """What the config files say; empty when there are none."""

    default_model: str | None = None
    runlog: str | None = None
    # name -> fields as written; merged over a built-in model of that name, if any
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: bool | str | None = None
    budget: float | None = None
    route: str | None = None
    task_models: dict[str, list[str]] = field(default_factory=dict)
    # [routing.learned.NAME] path = ...: NAME -> the router file (checked to exist, not read)
    learned_routers: dict[str, Path] = field(default_factory=dict)
    server: ServerSettings = field(default_factory=ServerSettings)
    # [breaker]: CircuitBreaker's arguments (threshold, cooldown_s, max_cooldown_s, backoff)
    breaker: dict[str, Any] = field(default_factory=dict)
    # [concurrency]: default = calls in flight per provider; PROVIDER = its own limit
    concurrency: dict[str, int] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)


def cache_from_env() -> bool | str | None:
    """``MMO_CACHE``: False (off), True (on, at the default file), a file path, or None (unset)."""
    value = os.environ.get("MMO_CACHE", "").strip()
    if not value:
        return None
    if value.lower() in _OFF:
        return False
    if value.lower() in _ON:
        return True
    return value


def default_cache_path() -> str:
    """The response cache's file: ``MMO_CACHE`` when it names one, else the user cache directory."""
    setting = cache_from_env()
    if isinstance(setting, str):
        return setting
    import platformdirs

    return str(Path(platformdirs.user_cache_dir("mmo_magic")) / "responses.sqlite3")


def default_runlog_path() -> str:
    """The run log's file: ``MMO_RUNLOG``, else ``runs.sqlite3`` in the user data directory."""
    if explicit := os.environ.get("MMO_RUNLOG"):
        return explicit
    import platformdirs

    return str(Path(platformdirs.user_data_dir("mmo_magic")) / "runs.sqlite3")


def config_paths(cwd: Path | None = None) -> list[Path]:
    """The config files that exist, lowest precedence first."""
    explicit = os.environ.get("MMO_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"MMO_CONFIG points at {path}, which is not a file.")
        return [path]
    import platformdirs

    candidates = [
        Path(platformdirs.user_config_dir("mmo_magic")) / "mmo.toml",
        (cwd or Path.cwd()) / "mmo.toml",
    ]
    seen: list[Path] = []
    for path in candidates:
        if path.is_file() and path.resolve() not in [p.resolve() for p in seen]:
            seen.append(path)
    return seen


def load_settings(paths: list[Path] | None = None) -> Settings:
    """Merge the config files (default: ``config_paths()``) into Settings."""
    settings = Settings()
    for path in config_paths() if paths is None else paths:
        data = _read_toml(Path(path))
        settings.sources.append(Path(path))
        for key, value in data.items():
            if key not in _TOP_LEVEL_KEYS:
                raise ConfigError(
                    f"{path}: unknown setting {key!r}.", hint=_did_you_mean(key, _TOP_LEVEL_KEYS)
                )
            if key == "routing":
                _read_routing(path, value, settings)
            elif key == "server":
                _read_server(path, value, settings)
            elif key == "breaker":
                _read_breaker(path, value, settings)
            elif key == "concurrency":
                _read_concurrency(path, value, settings)
            elif key == "cache":
                if not isinstance(value, bool | str):
                    raise ConfigError(
                        f"{path}: cache must be true, false or a file path, got {_describe(value)}."
                    )
                settings.cache = value
            elif key == "budget":
                if not _is_number(value) or not math.isfinite(value) or value < 0:
                    raise ConfigError(
                        f"{path}: budget must be a number of USD >= 0, got {_describe(value)}."
                    )
                settings.budget = float(value)
            elif key == "models":
                if not isinstance(value, dict):
                    raise ConfigError(f"{path}: 'models' must be a table ([models.NAME]).")
                for name, fields in value.items():
                    if not isinstance(fields, dict):
                        raise ConfigError(f"{path}: [models.{name}] must be a table of fields.")
                    _check_fields(path, name, fields)
                    settings.models.setdefault(name, {}).update(fields)
            elif not isinstance(value, str):
                raise ConfigError(f"{path}: {key} must be a string, got {_describe(value)}.")
            else:
                setattr(settings, key, value)
    return settings


def model_from_dict(
    name: str, fields: dict[str, Any], base: ModelConfig | None = None, *, source: str = "config"
) -> ModelConfig:
    """A ModelConfig from config fields, over ``base`` (a built-in model) when given."""
    try:
        if base is not None:
            return base.replace(**fields)
        missing = [f for f in ("provider", "model_id") if f not in fields]
        if missing == ["model_id"]:
            fields = {**fields, "model_id": name}
        elif missing:
            raise ConfigError(
                f"{source}: [models.{name}] is a new model and needs provider = ...",
                hint="One of openai, anthropic, local, sim, embedded.",
            )
        return ModelConfig(**{"name": name, **fields})
    except TypeError as exc:  # a field ModelConfig does not have
        raise ConfigError(f"{source}: [models.{name}]: {exc}") from exc


def _read_routing(path: Path, table: Any, settings: Settings) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'routing' must be a table ([routing]).")
    for key, value in table.items():
        if key not in _ROUTING_KEYS:
            raise ConfigError(
                f"{path}: [routing] unknown setting {key!r}.",
                hint=_did_you_mean(key, _ROUTING_KEYS),
            )
        if key == "default":
            if not isinstance(value, str):
                raise ConfigError(
                    f"{path}: [routing] default must be a string, got {_describe(value)}."
                )
            settings.route = value
            continue
        if key == "learned":
            _read_learned(path, value, settings)
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [routing.tasks] must be a table of task = model(s).")
        for task, models in value.items():
            names = [models] if isinstance(models, str) else models
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ConfigError(
                    f"{path}: [routing.tasks] {task} must be a model name or a list of them, "
                    f"got {_describe(models)}."
                )
            settings.task_models[task] = names


def _read_learned(path: Path, table: Any, settings: Settings) -> None:
    """[routing.learned.NAME] path = "...": where each named learned router's file is.

    Only the file's existence is checked here (core reads no router); the orchestrator
    loads it (``Orchestrator.from_config``), so a damaged file is refused there.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [routing.learned] must hold tables ([routing.learned.NAME]).")
    for name, fields in table.items():
        where = f"{path}: [routing.learned.{name}]"
        if not _ROUTER_NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: {name!r} is not a router name.",
                hint="Use letters, digits, '_', '-' or '.', e.g. [routing.learned.mine].",
            )
        if not isinstance(fields, dict):
            raise ConfigError(f'{where} must be a table: path = "router.json".')
        for key in fields:
            if key not in _LEARNED_KEYS:
                raise ConfigError(
                    f"{where} unknown setting {key!r}.", hint=_did_you_mean(key, _LEARNED_KEYS)
                )
        file = fields.get("path")
        if not isinstance(file, str) or not file.strip():
            raise ConfigError(
                f"{where} needs path = the router file, got {_describe(file)}.",
                hint='Save one with router.save("router.json") and give its path.',
            )
        router_path = Path(file).expanduser()
        if not router_path.is_absolute():
            router_path = Path(path).parent / router_path
        if not router_path.is_file():
            raise ConfigError(
                f"{where}: the router file {router_path} does not exist.",
                hint="Save one there with router.save(...), or fix the path "
                "(relative paths are read from the config file's directory).",
            )
        settings.learned_routers[name] = router_path


def _read_concurrency(path: Path, table: Any, settings: Settings) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'concurrency' must be a table ([concurrency]).")
    for key, value in table.items():
        if key != "default" and key not in PROVIDERS:
            raise ConfigError(
                f"{path}: [concurrency] {key!r} is neither 'default' nor a provider.",
                hint=_did_you_mean(key, ("default", *PROVIDERS)),
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{path}: [concurrency] {key} must be a whole number >= 1, got {_describe(value)}."
            )
        settings.concurrency[key] = value


def _read_breaker(path: Path, table: Any, settings: Settings) -> None:
    """[breaker]: numbers only here; CircuitBreaker checks their ranges when it is built."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'breaker' must be a table ([breaker]).")
    for key, value in table.items():
        if key not in _BREAKER_KEYS:
            raise ConfigError(
                f"{path}: [breaker] unknown setting {key!r}.",
                hint=_did_you_mean(key, _BREAKER_KEYS),
            )
        if not _is_number(value) or not math.isfinite(value):
            raise ConfigError(f"{path}: [breaker] {key} must be a number, got {_describe(value)}.")
        settings.breaker[key] = value


def _read_server(path: Path, table: Any, settings: Settings) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'server' must be a table ([server]).")
    for key, value in table.items():
        if key not in _SERVER_TYPES:
            raise ConfigError(
                f"{path}: [server] unknown setting {key!r}.",
                hint=_did_you_mean(key, _SERVER_TYPES),
            )
        annotation = _SERVER_TYPES[key]
        if not _matches(value, annotation):
            raise ConfigError(
                f"{path}: [server] {key} must be {_type_name(annotation)}, got {_describe(value)}."
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(
                f"{path}: [server] {key} must be a finite number, got {value!r}.",
                hint=f"Give {key} in seconds, e.g. 10.",
            )
        if key in _SERVER_POSITIVE and value <= 0:
            raise ConfigError(f"{path}: [server] {key} must be > 0, got {value!r}.")
        if key == "port" and value > 65535:
            raise ConfigError(
                f"{path}: [server] port must be 1-65535, got {value!r}.",
                hint="TCP ports go up to 65535; 8000 is the default.",
            )
        if key == "metrics" and value not in ("admin", "public", "off"):
            raise ConfigError(
                f"{path}: [server] metrics must be 'admin', 'public' or 'off', got {value!r}."
            )
        if key == "graceful_shutdown_s" and value < 0:
            raise ConfigError(f"{path}: [server] {key} must be >= 0, got {value!r}.")
        if key == "allowed_hosts":
            for host in value:
                if not host.strip() or any(c in host for c in "/@ \t"):
                    raise ConfigError(
                        f"{path}: [server] allowed_hosts: {host!r} is not a host name.",
                        hint='Give names or addresses, e.g. ["example.com", "10.0.0.5:8000"].',
                    )
        if key == "deployments":
            value = {name: tuple(members) for name, members in value.items()}
            if any(not members for members in value.values()):
                raise ConfigError(f"{path}: [server.deployments] a name needs 1 or more models.")
        setattr(settings.server, key, tuple(value) if isinstance(value, list) else value)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        where = _LINE.search(text)
        line = f":{where.group(1)}" if where else ""
        reason = _LINE.sub("", text).strip()
        raise ConfigError(f"{path}{line}: invalid TOML: {reason}.") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a TOML file (byte {exc.start} is not UTF-8 text).",
            hint="mmo.toml is a text file; see README's 'Models and configuration'.",
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}.") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_fields(path: Path, name: str, fields: dict[str, Any]) -> None:
    known = [f.name for f in dataclasses.fields(ModelConfig)]
    for key, value in fields.items():
        if key not in known:
            raise ConfigError(
                f"{path}: [models.{name}] unknown field {key!r}.", hint=_did_you_mean(key, known)
            )
        if not _matches(value, _FIELD_TYPES[key]):
            raise ConfigError(
                f"{path}: [models.{name}] {key} must be {_type_name(_FIELD_TYPES[key])}, "
                f"got {_describe(value)}."
            )


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is tuple:  # tuple[str, ...] is written as a TOML array of strings
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if origin is dict:  # dict[str, tuple[str, ...]]: a table of arrays of strings
        value_type = typing.get_args(annotation)[1]
        return isinstance(value, dict) and all(_matches(v, value_type) for v in value.values())
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is tuple:
        return "a list of strings"
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = (
        [a for a in typing.get_args(annotation) if a is not type(None)]
        if is_union
        else [annotation]
    )
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return " or ".join(names.get(a, getattr(a, "__name__", str(a))) for a in args)


def _describe(value: Any) -> str:
    kind = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a table",
    }
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"Did you mean {close[0]!r}?" if close else None
