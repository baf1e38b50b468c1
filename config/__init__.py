"""Django project package (settings, urls, wsgi, asgi, celery).

Named `config`, not `platform`: a top-level `platform` package would shadow the standard library
module that `uuid`, pytest and Celery import.
"""

from .celery import app as celery_app

__all__ = ("celery_app",)
