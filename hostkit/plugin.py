"""The plugin API: the one module a plugin author imports besides ``hostkit`` (SPEC §7).

Everything a server plugin, an authentication plugin or a hosting-model plugin needs is here,
by what it is for. hostkit's own plugins (``plugins/hostkit_inprocess``,
``plugins/hostkit_outofprocess``) and the third-party sample ``samples/hostkit_uvicorn``
import nothing else of hostkit, and a test keeps it so: a name a plugin needs is added here,
not imported from the module that defines it.

- **Hooks**: :data:`hookimpl` marks an implementation; the specs are in
  :mod:`hostkit.hookspecs`.
- **The role and the server**: :class:`HostRole` (``hostkit_host_role``),
  :class:`ServerRequest` (the one argument of ``hostkit_create_server``), the
  :class:`Server` protocol (and :class:`ReloadableServer`, a server that replaces the app's
  processes on SIGHUP), :class:`ServerInfo` declarations and :func:`check_server_choice`.
- **Listening**: :func:`bind_all` / :func:`close_all`, :class:`ListenAddress`,
  :data:`BACKLOG`.
- **TLS**: :func:`server_context` (the one TLS context builder), :func:`tls_extension` and
  :func:`tls_extension_of` (the ASGI ``tls`` extension), :class:`TLSConnection`.
- **ASGI**: the types :data:`Scope`, :data:`Message`, :data:`Receive`, :data:`Send`,
  :data:`ASGIApp`, and :func:`send_refusal`.
- **Settings tables** (``hostkit_add_settings_tables``): :class:`SettingsTable`,
  :func:`setting` and the value kinds :class:`Boolean`, :class:`Number`, :class:`Text`,
  :class:`Choice`, :class:`TextList`, :class:`TextTable`; :func:`configuration_files` (the
  files a configuration is read from, e.g. to watch them), :func:`reload_configuration`
  (those files read again for a reload, or ``None`` when they no longer load) and
  :func:`resolve_path`.
- **The content root**: :class:`ContentRootRules` (``app_offline_file``,
  ``restart_on_config_change``; a plugin that owns them sets
  ``HostBuilder.content_root_rules``) and :class:`ContentRootWatch` (the watch that applies
  them).
- **Authentication**: :class:`Authenticator`, :class:`AuthenticateResult`,
  :class:`AuthenticationScheme`, and :data:`FORWARDED_RESULT_KEY` (where a child's
  integration puts the principal its front forwarded).
- **The child process contract** (a front and its children): :class:`ChildContract`, the
  header names, and :data:`CHILD_VARIABLES` (the environment variables it reserves).
- **Per request, in the process that owns the public listener**: :class:`Gateway` (from
  ``ServerRequest.gateway``: forwarded headers, request ids, health paths, the limit, the
  access log, metrics), :class:`Readiness`, :class:`RequestLimit`, :data:`REQUEST_ID_HEADER`,
  :data:`RETRY_AFTER_HEADER`; the gateway's parts: :class:`ForwardedHeaders` and
  :class:`ForwardedView`, :class:`AccessLog` and :class:`AccessEntry`; :data:`REQUEST_ID`,
  the request id of the request being served (a child's integration sets it from its front's
  ``X-Request-Id``: it is ``context.trace_identifier``).
- **HTTP/2**: :class:`FloodLimits` and :class:`FrameWatch` (the flood defences every
  HTTP/2 listener applies to the bytes its client sends).
- **Memory**: :class:`ConnectionMemory` (when a burst of connections is over) and
  :func:`release_freed_memory` (the allocator's free memory back to the system, glibc's
  ``malloc_trim``).
- **Responses**: :func:`status_line` and :data:`STANDARD_STATUS_LINES` (the standard
  reason phrases), :func:`render_error_page`.
- **Processes** a plugin starts and owns (a front's children; :mod:`hostkit.processes`):
  :class:`ManagedProcess` run from a :class:`ProcessSpec` (parent-death launcher, a process
  group of its own, output tail, stop with a grace period), :data:`OUTPUT_TAIL_BYTES`,
  :func:`free_loopback_port`, :func:`this_program` (this program's command line),
  :class:`RecyclePolicy` (``max_requests``, ``max_lifetime``, ``max_memory``, read every
  :data:`MEMORY_CHECK_INTERVAL` seconds), and :class:`RapidFailBudget` (``rapid_fails_per_minute``; its
  :meth:`~RapidFailBudget.exhausted` returns an :class:`Exhausted`); their :class:`Metrics`
  (starts, exits by :func:`exit_reason`, recycles, of kind :data:`CHILD_PROCESS`).
"""

from __future__ import annotations

from hostkit.access_log import AccessEntry, AccessLog
from hostkit.asgi import ASGIApp, Message, Receive, Scope, Send, send_refusal
from hostkit.authentication import (
    FORWARDED_RESULT_KEY,
    AuthenticateResult,
    AuthenticationScheme,
    Authenticator,
)
from hostkit.child_contract import (
    CLIENT_CERT_HEADER,
    HTTP_VERSION_HEADER,
    IDENTITY_HEADER,
    RESERVED_HEADER_PREFIX,
    TOKEN_HEADER,
    TOKEN_VARIABLE,
    ChildContract,
)
from hostkit.child_contract import VARIABLES as CHILD_VARIABLES
from hostkit.configuration.sources import (
    configuration_files,
    reload_configuration,
    resolve_path,
)
from hostkit.content_root import ContentRootRules, ContentRootWatch
from hostkit.configuration.tables import (
    Boolean,
    Choice,
    Number,
    SettingsTable,
    Text,
    TextList,
    TextTable,
    setting,
)
from hostkit.error_pages import render as render_error_page
from hostkit.forwarded_headers import ForwardedHeaders, ForwardedView
from hostkit.gateway import RETRY_AFTER_HEADER, Gateway, Readiness, RequestLimit
from hostkit.hookspecs import hookimpl
from hostkit.http2_floods import FloodLimits, FrameWatch
from hostkit.listeners import BACKLOG, ListenAddress, bind_all, close_all
from hostkit.logs import REQUEST_ID
from hostkit.memory import ConnectionMemory, release_freed_memory
from hostkit.metrics import CHILD_PROCESS, Metrics, exit_reason
from hostkit.processes.command import this_program
from hostkit.processes.managed import OUTPUT_TAIL_BYTES, ManagedProcess, ProcessSpec
from hostkit.processes.ports import free_loopback_port
from hostkit.processes.rapid_fail import Exhausted, RapidFailBudget
from hostkit.processes.recycling import MEMORY_CHECK_INTERVAL, RecyclePolicy
from hostkit import request_rules
from hostkit.request_ids import REQUEST_ID_HEADER
from hostkit.server_contract import (
    HostRole,
    ReloadableServer,
    Server,
    ServerInfo,
    ServerRequest,
    check_server_choice,
)
from hostkit.caches import remember
from hostkit.status_lines import STANDARD_STATUS_LINES, status_line
from hostkit.tls import TLSConnection, server_context, tls_extension, tls_extension_of

__all__ = [
    "ASGIApp", "AccessEntry", "AccessLog", "AuthenticateResult", "AuthenticationScheme", "Authenticator", "BACKLOG",
    "Boolean", "CHILD_VARIABLES", "ContentRootRules", "ContentRootWatch", "CLIENT_CERT_HEADER", "ChildContract", "Choice", "Exhausted",
    "FloodLimits", "FrameWatch", "ConnectionMemory", "release_freed_memory",
    "CHILD_PROCESS", "FORWARDED_RESULT_KEY", "ForwardedHeaders", "HTTP_VERSION_HEADER", "ForwardedView", "Gateway", "HostRole", "IDENTITY_HEADER", "ListenAddress", "ManagedProcess", "Metrics", "exit_reason",
    "Message", "Number", "OUTPUT_TAIL_BYTES", "ProcessSpec", "RESERVED_HEADER_PREFIX", "STANDARD_STATUS_LINES",
    "MEMORY_CHECK_INTERVAL", "REQUEST_ID", "REQUEST_ID_HEADER", "RETRY_AFTER_HEADER", "RapidFailBudget", "Readiness", "RequestLimit", "RecyclePolicy", "Receive", "ReloadableServer", "reload_configuration", "Scope", "Send", "Server", "ServerInfo", "ServerRequest",
    "SettingsTable", "TLSConnection", "TOKEN_HEADER", "TOKEN_VARIABLE", "Text", "TextList",
    "TextTable", "bind_all", "check_server_choice", "close_all", "configuration_files",
    "free_loopback_port", "hookimpl", "remember", "render_error_page", "request_rules", "resolve_path", "send_refusal",
    "server_context", "setting", "status_line", "tls_extension", "tls_extension_of",
    "this_program",
]
