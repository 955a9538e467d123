"""The hello sample: the program of SPEC §2, unchanged in both hosting models.

Run it from this folder (its hostkit.toml chooses the hosting model)::

    python app.py
"""

from __future__ import annotations

import sys

import hostkit


async def hello(context: hostkit.HttpContext) -> None:
    context.response.headers["content-type"] = "text/plain; charset=utf-8"
    await context.response.write(f"Hello from {context.features.hosting_model}\n")


def create_host_builder(args: list[str]) -> hostkit.HostBuilder:
    return hostkit.Host.create_default_builder(args).use_app(hello)


if __name__ == "__main__":
    create_host_builder(sys.argv[1:]).build().run()
