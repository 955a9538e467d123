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
    keys of ANCM's own settings; the plugin that owns the table hands them to the builder
    (``HostBuilder.content_root_rules``)."""

    app_offline_file: str = ""
    restart_on_config_change: bool = False


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
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Watch until ``stopping`` is set; for ``task_group.start``.

        Calls ``on_offline`` with the offline file's content (or ``None``) before it reports
        started and after each change to the file; calls ``on_config_change`` after a change
        to a configuration file when ``restart_on_config_change``.
        """
        await self._check_offline(on_offline)
        task_status.started()
        offline_path = self.offline_path
        offline_name = offline_path.name.lower() if offline_path is not None else None
        config_names = {path.name.lower()
                        for path in configuration_files(self.content_root, self.environment_name)}
        watched = config_names | ({offline_name} if offline_name else set())

        def relevant(change: watchfiles.Change, path: str) -> bool:
            return Path(path).name.lower() in watched

        async for changes in watchfiles.awatch(self.content_root, watch_filter=relevant,
                                               recursive=False, stop_event=stopping,
                                               debounce=50, step=20):
            names = {Path(path).name.lower() for _, path in changes}
            if offline_name in names:
                await self._check_offline(on_offline)
            if names & config_names and self.rules.restart_on_config_change:
                logger.info("configuration changed: replacing the app's processes")
                await on_config_change()

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
