"""The installed version of rlgen: one string, from the package metadata (``pyproject.toml``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rlgen")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
