"""A Django project served through WSGI (``get_wsgi_application()``), for
tests/test_wsgi_frameworks.py. The settings are tests/programs/django_app.py's (imported
from it), with this module's URLs and the same views as tests/programs/flask_app.py:

- ``/form`` (POST), ``/upload`` (POST multipart), ``/stream`` (a StreamingHttpResponse of
  :data:`CHUNKS` chunks), ``/boom`` (the view raises: Django answers 500 and logs
  "Internal Server Error: /boom" on ``django.request``), ``/whoami``.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

import django_app  # noqa: F401 - configures the settings this project reuses

import hostkit

CHUNKS = 5
PAUSE = 0.05

settings.ROOT_URLCONF = __name__


@csrf_exempt
def form(request: HttpRequest) -> HttpResponse:
    return JsonResponse(request.POST.dict())


@csrf_exempt
def upload(request: HttpRequest) -> HttpResponse:
    answer = {}
    for name, stored in request.FILES.items():
        data = stored.read()
        answer[name] = {"filename": stored.name, "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()}
    return JsonResponse(answer)


def stream(request: HttpRequest) -> HttpResponse:
    def chunks() -> Iterator[bytes]:
        for index in range(CHUNKS):
            yield f"chunk {index} of {request.path_info};".encode()
            time.sleep(PAUSE)

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom in a Django view")


def whoami(request: HttpRequest) -> HttpResponse:
    meta = request.META
    return JsonResponse({"remote_addr": meta.get("REMOTE_ADDR"), "scheme": request.scheme,
                         "script_root": meta.get("SCRIPT_NAME"), "path": request.path_info,
                         "url": request.build_absolute_uri(),
                         "remote_user": meta.get("REMOTE_USER"),
                         "auth_type": meta.get("AUTH_TYPE"),
                         "protocol": meta["SERVER_PROTOCOL"]})


urlpatterns = [path("form", form), path("upload", upload), path("stream", stream),
               path("boom", boom), path("whoami", whoami)]

if __name__ == "__main__":
    django.setup()
    from django.core.wsgi import get_wsgi_application

    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(
        get_wsgi_application()).build().run()
