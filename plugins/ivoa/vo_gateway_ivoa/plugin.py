"""Entry point of the ``ivoa`` kind (entry-point group ``vo_gateway``)."""

from gateway.hookspecs import hookimpl

from .archive import IvoaArchive


@hookimpl
def gateway_register_archives():
    return [IvoaArchive]
