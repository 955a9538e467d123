"""A program whose own setup fails after build(): it reports it through Host.fail_startup."""

from __future__ import annotations

import sys

import hostkit


async def app(context: hostkit.HttpContext) -> None:
    await context.response.write("should never be served")


def load_settings() -> None:
    raise FileNotFoundError("settings.json is missing (on purpose)")


if __name__ == "__main__":
    host = hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build()
    try:
        load_settings()
    except Exception as error:
        host.fail_startup(error)
    host.run()
