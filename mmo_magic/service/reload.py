"""Config reload on SIGHUP (``mmo-serve``): models, deployments, what is served, the
max_tokens cap; client keys and their limits are read from the key store on every request
already.

A configured model whose fields changed is replaced (its next call builds a new client;
calls and streams under way keep the old one to their end), a new one is added. A model
removed from mmo.toml stays until a restart, as do [server]'s address, keys variable,
body limit and metrics setting. A config that does not load is logged and changes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..core.catalogue import builtin_models
from ..core.config import load_settings, model_from_dict
from ..core.errors import MMOError
from ..core.models import Catalogue
from ..orchestration.orchestrator import Orchestrator

__all__ = ["reload_config"]

logger = logging.getLogger(__name__)


def reload_config(app: Any, config: str | None) -> list[str]:
    """Read the config again into ``app`` (``create_app``'s); returns the models changed."""
    orc: Orchestrator = app.state.orchestrator
    try:
        settings = load_settings(None if config is None else [Path(config)])
        builtin = Catalogue.of(builtin_models())
        source = ", ".join(str(p) for p in settings.sources) or "config"
        models = []
        for name, fields in settings.models.items():
            base = builtin.resolve(name) if name in builtin else None
            models.append(model_from_dict(name, fields, base, source=source))
        changed = [m for m in models if m.name not in orc.catalogue
                   or orc.catalogue.resolve(m.name) != m]  # fmt: skip
        for model in changed:
            orc.add_model(model)
        app.state.reload_server(settings.server)  # checks deployments name known models
    except MMOError as exc:
        logger.error("SIGHUP: the config was not reloaded: %s", exc)
        return []
    logger.warning(
        "SIGHUP: config reloaded; models changed or added: %s",
        ", ".join(m.name for m in changed) or "none",
    )
    return [m.name for m in changed]
