"""Entry point of the ``mast`` kind (entry-point group ``vo_gateway``)."""

from gateway.hookspecs import hookimpl

from .archive import MastArchive


@hookimpl
def gateway_register_archives():
    return [MastArchive]
