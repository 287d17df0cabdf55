"""Entry point of the ``sdss`` kind (entry-point group ``vo_gateway``)."""

from gateway.hookspecs import hookimpl

from .archive import SdssArchive


@hookimpl
def gateway_register_archives():
    return [SdssArchive]
