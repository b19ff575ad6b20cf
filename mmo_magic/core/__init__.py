"""The core: types, errors, model configuration and catalogue, settings, pricing, templates,
redaction, ids and the background loop. It imports nothing else of the package."""

__version__ = "0.1.0"
