"""A learned router wherever routing is: ``route=router``, named routers (``add_router``,
mmo.toml's ``[routing.learned.NAME]``), ``%%mmo auto -r NAME`` and ``%mmo_route -r NAME``
through a real InteractiveShell. (The gateway's ``auto:NAME``: tests/service/.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import WORLD_PRICES, World, magic_shell, make_world
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import mmo_magic as mmo
from mmo_magic.core.errors import ConfigError
from mmo_magic.providers import register_function, unregister_function
from mmo_magic.routing.learned import LearnedRouter, learn

MODELS = tuple(WORLD_PRICES)  # small, medium, large


def answer_as(name: str) -> Any:
    return lambda request: f"{name} answers"


@pytest.fixture(scope="module")
def functions() -> Iterator[None]:
    for name in MODELS:
        register_function(f"wiring-{name}", answer_as(name))
    yield
    for name in MODELS:
        unregister_function(f"wiring-{name}")


def world_models() -> list[mmo.ModelConfig]:
    """The synthetic world's models as function models, priced in its order."""
    return [
        mmo.ModelConfig("function", f"wiring-{name}", name=name,
                        cost_per_1k_input=price, cost_per_1k_output=price)
        for name, price in WORLD_PRICES.items()
    ]  # fmt: skip


@pytest.fixture(scope="module")
def router() -> LearnedRouter:
    return learn(make_world(150, seed=1).evidence()).at(quality=0.95)


@pytest.fixture(scope="module")
def new() -> World:
    return make_world(30, seed=77)


@pytest.fixture
def orc(functions: None) -> Iterator[mmo.Orchestrator]:
    with mmo.Orchestrator(world_models(), default_model="large", runlog=":memory:") as o:
        yield o


def mixed(router: LearnedRouter, new: World) -> tuple[str, str]:
    """A prompt the router sends to a cheaper model, and one it sends to the large one."""
    picks = router.choose(new.prompts)
    cheap = next(p for p, m in zip(new.prompts, picks, strict=True) if m != "large")
    dear = next(p for p, m in zip(new.prompts, picks, strict=True) if m == "large")
    return cheap, dear


# -- the API ----------------------------------------------------------------------------------


def test_route_takes_a_learned_router_object(
    orc: mmo.Orchestrator, router: LearnedRouter, new: World
) -> None:
    for prompt in mixed(router, new):
        chosen = router.choose([prompt])[0]
        response = orc.complete(prompt, model="auto", route=router)
        assert response.model == chosen and response.content == f"{chosen} answers"
        assert "predicted quality" in (response.route_reason or "")


def test_a_named_router_is_used_by_name_in_complete_stream_and_route(
    orc: mmo.Orchestrator, router: LearnedRouter, new: World
) -> None:
    orc.add_router("mine", router)
    assert orc.routers == {"mine": router}
    cheap, dear = mixed(router, new)
    assert orc.complete(cheap, model="auto", route="mine").model == router.choose([cheap])[0]
    assert orc.complete(dear, route="mine").model == "large"  # route= alone routes
    stream = orc.stream(cheap, model="auto", route="mine")
    assert "".join(stream) == f"{router.choose([cheap])[0]} answers"
    decision = orc.route(dear, route="mine")
    assert decision.model == "large" and decision.router == "learned"
    for model in MODELS:  # every model's predicted quality, with its price
        assert f"{model} 0." in decision.reason or f"{model} 1." in decision.reason
    assert "predicted quality" in decision.reason and "knob" in decision.reason
    # It stays through model changes (built-in routers are rebuilt then) and can be the default.
    orc.add_model(orc.catalogue.resolve("small").replace(temperature=0.5))
    orc.default_model = "medium"
    orc.default_route = "mine"
    assert orc.complete(dear, model="auto").model == "large"


def test_add_router_takes_a_saved_file(
    orc: mmo.Orchestrator, router: LearnedRouter, new: World, tmp_path: Path
) -> None:
    router.save(tmp_path / "mine.json")
    orc.add_router("from-file", tmp_path / "mine.json")
    orc.add_router("from-str", str(tmp_path / "mine.json"))
    cheap, _ = mixed(router, new)
    for name in ("from-file", "from-str"):
        assert orc.route(cheap, route=name).model == router.choose([cheap])[0]


def test_add_router_refuses_bad_names_routers_and_missing_models(
    functions: None, router: LearnedRouter, tmp_path: Path
) -> None:
    with mmo.Orchestrator(world_models(), default_model="large", runlog=":memory:") as orc:
        for name in ("", "two words", "auto:x", 3):
            with pytest.raises(ConfigError, match="is not a name"):
                orc.add_router(name, router)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="built-in router"):
            orc.add_router("Task", router)
        with pytest.raises(ConfigError, match="takes a Router or a router file's path, got dict"):
            orc.add_router("mine", {})  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="No router file at"):
            orc.add_router("mine", tmp_path / "nothing.json")
        assert orc.routers == {}
    without_medium = [m for m in world_models() if m.name != "medium"]
    missing = r"learned on medium, which is not in the catalogue"
    with (
        mmo.Orchestrator(without_medium, default_model="large", runlog=":memory:") as orc,
        pytest.raises(ConfigError, match=missing),
    ):
        orc.add_router("mine", router)


def test_an_unknown_route_name_lists_the_named_routers(
    orc: mmo.Orchestrator, router: LearnedRouter
) -> None:
    orc.add_router("mine", router)
    with pytest.raises(ConfigError, match=r"Unknown router 'mien'.*Did you mean 'mine'"):
        orc.route("hello", route="mien")
    with pytest.raises(ConfigError, match=r"Routers: rules, complexity, task, cost, mine"):
        orc.complete("hello", model="auto", route="nonesuch")
    assert orc.route("hello", route="TASK").router == "task"  # built-ins: any case, as before


# -- mmo.toml ---------------------------------------------------------------------------------


def write_config(where: Path, learned: str, *, default: str = "mine") -> Path:
    models = "".join(
        f'[models.{name}]\nprovider = "function"\nmodel_id = "wiring-{name}"\n'
        f"cost_per_1k_input = {price}\ncost_per_1k_output = {price}\n"
        for name, price in WORLD_PRICES.items()
    )
    config = where / "mmo.toml"
    config.write_text(
        f'default_model = "large"\n{models}[routing]\ndefault = "{default}"\n{learned}'
    )
    return config


def test_mmo_toml_names_learned_routers_by_path(
    functions: None, router: LearnedRouter, new: World, tmp_path: Path
) -> None:
    (tmp_path / "routers").mkdir()
    router.save(tmp_path / "routers" / "mine.json")
    router.save(tmp_path / "other.json")
    learned = (
        '[routing.learned.mine]\npath = "routers/mine.json"\n'  # relative to the file
        f'[routing.learned.other]\npath = "{tmp_path / "other.json"}"\n'
    )
    config = write_config(tmp_path, learned)
    with mmo.Orchestrator.from_config(config, runlog=":memory:") as orc:
        assert sorted(orc.routers) == ["mine", "other"]
        cheap, dear = mixed(router, new)
        assert orc.complete(cheap, model="auto").model == router.choose([cheap])[0]  # default
        assert orc.complete(dear, route="other").model == "large"


@pytest.mark.parametrize(
    ("learned", "message"),
    [
        ('[routing.learned.mine]\npath = "gone.json"\n', r"router file .*gone\.json does not"),
        ("[routing.learned.mine]\npath = 3\n", r"needs path = the router file, got an integer"),
        ('[routing.learned.mine]\npaht = "x.json"\n', r"unknown setting 'paht'.*'path'"),
        ('[routing.learned]\nmine = "x.json"\n', r"\[routing.learned.mine\] must be a table"),
        ('[routing.learned."two words"]\npath = "x.json"\n', r"is not a router name"),
    ],
)
def test_mmo_toml_learned_router_mistakes_are_one_config_error(
    functions: None, tmp_path: Path, learned: str, message: str
) -> None:
    config = write_config(tmp_path, learned)
    with pytest.raises(ConfigError, match=message) as caught:
        mmo.Orchestrator.from_config(config, runlog=":memory:")
    assert "\n" not in str(caught.value)


def test_mmo_toml_refuses_a_damaged_router_file_or_one_over_missing_models(
    functions: None, router: LearnedRouter, tmp_path: Path
) -> None:
    (tmp_path / "bad.json").write_text('{"not": "a router"}')
    config = write_config(tmp_path, '[routing.learned.mine]\npath = "bad.json"\n')
    with pytest.raises(ConfigError, match=r"mmo.toml: \[routing.learned.mine\]: ") as caught:
        mmo.Orchestrator.from_config(config, runlog=":memory:")
    assert "\n" not in str(caught.value)
    router.save(tmp_path / "good.json")
    text = write_config(tmp_path, '[routing.learned.mine]\npath = "good.json"\n').read_text()
    config.write_text(text.replace("[models.medium]", "[models.middle]"))
    with pytest.raises(ConfigError, match=r"\[routing.learned.mine\]: .*learned on medium"):
        mmo.Orchestrator.from_config(config, runlog=":memory:")


# -- the magics through a real InteractiveShell ------------------------------------------------


@pytest.fixture
def ip(orc: mmo.Orchestrator, router: LearnedRouter) -> Iterator[InteractiveShell]:
    orc.add_router("mine", router)
    with magic_shell(orc) as shell:
        yield shell


def test_mmo_cell_routes_with_a_named_learned_router(
    ip: InteractiveShell, router: LearnedRouter, new: World
) -> None:
    for prompt in mixed(router, new):
        chosen = router.choose([prompt])[0]
        with capture_output() as cap:
            ip.run_cell_magic("mmo", "auto -r mine -o answer", prompt)
        assert cap.stderr == ""
        assert f"{chosen} answers" in cap.stdout
        assert ip.user_ns["answer"].model == chosen


def test_mmo_route_shows_the_predicted_qualities(
    ip: InteractiveShell, router: LearnedRouter, new: World
) -> None:
    _, dear = mixed(router, new)
    with capture_output() as cap:
        decision = ip.run_line_magic("mmo_route", f"-r mine {dear}")
    assert cap.stderr == ""
    assert decision.model == "large"
    shown = decision._repr_markdown_()
    assert "predicted quality" in shown
    for model in MODELS:
        assert model in shown
