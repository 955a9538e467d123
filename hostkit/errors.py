"""The errors hostkit raises for mistakes a user can fix.

Every one derives from :class:`HostkitError`, so a program can catch them all in one place.
"""

from __future__ import annotations


class HostkitError(Exception):
    """Base class of every error hostkit raises for a user mistake."""


class ConfigurationError(HostkitError):
    """A configuration value, file, variable or argument is wrong.

    The message names where the value came from (file, environment variable or command-line
    argument), the key, the bad value and what is allowed.
    """


class ServerSelectionError(HostkitError):
    """No plugin serves the configured hosting model and server name."""


class AddressInUseError(HostkitError):
    """A listen address of ``urls`` is already taken by another socket."""


class InvalidOperationError(HostkitError):
    """An operation is not allowed in the current state or configuration.

    For example a synchronous body read while ``server.allow_synchronous_io`` is false, or
    changing response headers after the response has started.
    """


class RequestBodyTooLargeError(HostkitError):
    """The request body is larger than ``server.max_request_body_size``.

    Raised from the app's body read that crosses the limit; the server answers 413.
    """
