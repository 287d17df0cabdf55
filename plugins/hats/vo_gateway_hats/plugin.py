"""Entry point of the ``hats`` kind (entry-point group ``vo_gateway``)."""

from gateway.hookspecs import hookimpl

from .archive import HatsArchive


@hookimpl
def gateway_register_archives():
    return [HatsArchive]
