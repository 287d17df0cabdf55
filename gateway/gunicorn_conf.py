"""gunicorn settings of the service (``gunicorn -c python:gateway.gunicorn_conf gateway.wsgi:app``;
``vo-gateway serve`` uses the same).  ``limit_request_line = 0``: a long ADQL query sent by GET
is the application's to judge, so it gets a DALI error document naming the limit
(``service.max_query_length``) instead of gunicorn's HTML 414 page."""

worker_class = "gthread"
timeout = 300
keepalive = 5
limit_request_line = 0
