"""Branch Loans API: an async microloans REST service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("branchloans")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
