"""Entry point of the ``embedded`` kind (entry-point group ``vo_gateway``)."""

from gateway.hookspecs import hookimpl

from .archive import EmbeddedArchive


@hookimpl
def gateway_register_archives():
    return [EmbeddedArchive]
