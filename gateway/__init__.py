"""vo-gateway: one IVOA service (TAP, SCS, SIA, DataLink, SODA) over installable archive
plugins. ``README.md`` is the front door; ``docs/`` holds the guides."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vo-gateway")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
