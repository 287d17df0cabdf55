"""Entry point of the ``hsc`` kind (entry-point group ``vo_gateway``)."""

from gateway.hookspecs import hookimpl

from .archive import HscArchive


@hookimpl
def gateway_register_archives():
    return [HscArchive]
