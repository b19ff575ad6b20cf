"""The core: types, errors, model configuration and catalogue, settings, pricing, templates,
redaction, ids and the background loop. It imports nothing else of the package."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mmo_magic")  # one version: pyproject's, as installed
except PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"
