"""What a change in the content root does to the processes that run the app.

ANCM watches the app's folder: while ``app_offline.htm`` exists it stops the app and answers
503 with the file's content, and a change to the configuration replaces the app's
processes. hostkit's OutOfProcess front does this for its children, and the supervisor for
its InProcess workers; :class:`ContentRootWatch` is the watch both run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import watchfiles
from anyio.abc import TaskStatus

from hostkit.configuration.sources import configuration_files

logger = logging.getLogger("hostkit.content_root")


@dataclasses.dataclass(frozen=True)
class ContentRootRules:
    """``app_offline_file`` (``""``: none) and ``restart_on_config_change``, the ``[module]``
    keys of ANCM's own settings, which the plugin that owns the table hands to the builder
    (``HostBuilder.content_root_rules``); and ``reload`` (``[workers] reload``, development):
    a change to a ``*.py`` file under the content root, or to a configuration file, reloads."""

    app_offline_file: str = ""
    restart_on_config_change: bool = False
    reload: bool = False


class _Watched(watchfiles.DefaultFilter):
    """The offline file and the configuration files in the content root itself; with
    ``reload``, every ``*.py`` file under it too (not in the folders watchfiles ignores by
    default: ``.git``, ``__pycache__``, ``.venv`` …)."""

    def __init__(self, content_root: Path, names: set[str], python: bool):
        super().__init__()
        self.content_root = content_root
        self.names = names
        self.python = python

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        file = Path(path)
        if file.parent == self.content_root and file.name.lower() in self.names:
            return True
        return self.python and file.suffix == ".py" and super().__call__(change, path)


class ContentRootWatch:
    """Watches ``content_root`` for the offline file and the configuration files of
    ``environment_name``; see :meth:`run`."""

    def __init__(self, content_root: Path, environment_name: str, rules: ContentRootRules):
        self.content_root = content_root
        self.environment_name = environment_name
        self.rules = rules
        self.offline = False

    @property
    def offline_path(self) -> Path | None:
        """The offline file's path, ``None`` without one."""
        name = self.rules.app_offline_file
        return self.content_root / name if name else None

    def offline_content(self) -> bytes | None:
        """The offline file's content while it exists, else ``None`` (an unreadable file is
        logged and counts as absent)."""
        path = self.offline_path
        if path is None:
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            logger.warning("cannot read %s: %s", path, error)
            return None

    async def run(self, stopping: anyio.Event, *,
                  on_offline: Callable[[bytes | None], Awaitable[None]],
                  on_config_change: Callable[[], Awaitable[None]],
                  on_code_change: Callable[[], Awaitable[None]] | None = None,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Watch until ``stopping`` is set; for ``task_group.start``.

        Calls ``on_offline`` with the offline file's content (or ``None``) before it reports
        started and after each change to the file; calls ``on_config_change`` after a change
        to a configuration file when ``restart_on_config_change`` or ``reload``; with
        ``reload``, calls ``on_code_change`` (default: ``on_config_change``) after a change
        to a ``*.py`` file, having logged which.
        """
        await self._check_offline(on_offline)
        task_status.started()
        offline_path = self.offline_path
        offline_name = offline_path.name.lower() if offline_path is not None else None
        config_names = {path.name.lower()
                        for path in configuration_files(self.content_root, self.environment_name)}
        watched = _Watched(self.content_root,
                           config_names | ({offline_name} if offline_name else set()),
                           python=self.rules.reload)
        restart = self.rules.restart_on_config_change or self.rules.reload
        async for changes in watchfiles.awatch(self.content_root, watch_filter=watched,
                                               recursive=self.rules.reload,
                                               stop_event=stopping, debounce=50, step=20):
            paths = {Path(path) for _, path in changes}
            names = {path.name.lower() for path in paths if path.parent == self.content_root}
            if offline_name in names:
                await self._check_offline(on_offline)
            if names & config_names and restart:
                logger.info("configuration changed: replacing the app's processes")
                await on_config_change()
            elif code := sorted(str(path) for path in paths if path.suffix == ".py"):
                logger.info("reload: %s changed: replacing the app's processes",
                            ", ".join(code))
                await (on_code_change or on_config_change)()

    async def _check_offline(self, on_offline: Callable[[bytes | None], Awaitable[None]]
                             ) -> None:
        content = self.offline_content()
        path = self.offline_path
        if content is not None:
            logger.info("%s exists: the app is offline", path.name if path else "")
        elif self.offline:
            logger.info("%s removed: the app is online again", path.name if path else "")
        self.offline = content is not None
        await on_offline(content)
