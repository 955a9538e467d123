"""A Django app over ASGI, configured as ``django-admin startproject`` leaves it in
development (``DEBUG = True``: Django's ``django`` logger prints to stderr itself), for the
logging tests (tests/test_logging.py).

- ``/order``: logs "order placed" on ``shop``, a logger of the app's ``LOGGING`` with its own
  console handler;
- ``/boom``: the view raises; Django answers 500 and logs "Internal Server Error: /boom" with
  the traceback on ``django.request``.
"""

from __future__ import annotations

import logging
import sys

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path

import hostkit

settings.configure(
    DEBUG=True,
    SECRET_KEY="only for a test",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    LOGGING={
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"console": {"class": "logging.StreamHandler"}},
        "loggers": {"shop": {"handlers": ["console"], "level": "INFO"}},
    },
)


def order(request: HttpRequest) -> HttpResponse:
    logging.getLogger("shop").info("order placed")
    return HttpResponse("ordered\n")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom in a Django view")


urlpatterns = [path("order", order), path("boom", boom)]

if __name__ == "__main__":
    django.setup()
    from django.core.asgi import get_asgi_application

    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(
        get_asgi_application()).build().run()
