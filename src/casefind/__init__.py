"""casefind: rules-based case-finding and outcomes for integrated health and social care."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("casefind")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+src"
