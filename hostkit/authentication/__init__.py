"""Server authentication (SPEC §3 ``[authentication]``, §5 ``authenticate``/``challenge``).

Built-in schemes: ``basic`` (users file of salted PBKDF2 hashes) and ``certificate`` (the
verified TLS client certificate). Plugins add schemes with the
``hostkit_add_authentication_schemes`` hook; :func:`build_authenticator` is the one place
that turns ``[authentication] schemes`` into the schemes that run.
"""

from __future__ import annotations

from collections.abc import Iterable

from hostkit.authentication.authenticator import Authenticator
from hostkit.authentication.basic import BasicScheme
from hostkit.authentication.certificate import CertificateScheme, certificate_principal
from hostkit.authentication.layer import FORWARDED_RESULT_KEY, AuthenticationMiddleware
from hostkit.authentication.passwords import hash_password, verify_password
from hostkit.authentication.scheme import AuthenticateResult, AuthenticationScheme
from hostkit.configuration import Configuration
from hostkit.errors import ConfigurationError

BUILT_IN_SCHEMES = ("basic", "certificate")

__all__ = [
    "AuthenticateResult", "AuthenticationMiddleware", "AuthenticationScheme", "Authenticator",
    "BasicScheme", "CertificateScheme", "FORWARDED_RESULT_KEY", "build_authenticator",
    "certificate_principal", "hash_password", "verify_password",
]


def build_authenticator(configuration: Configuration,
                        contributed: Iterable[AuthenticationScheme]) -> Authenticator | None:
    """The schemes named in ``[authentication] schemes``, or ``None`` when it is empty.

    Called once per host at build time. ``contributed`` are the plugins' schemes. Raises
    :class:`ConfigurationError` for an unknown scheme name, a scheme listed twice, a
    ``certificate`` scheme while the listener asks for no client certificate, and a missing
    or malformed users file.
    """
    options = configuration.options.authentication
    if not options.schemes:
        return None
    source = configuration.source_of("authentication.schemes")
    where = f"{source}: " if source else ""
    by_name: dict[str, AuthenticationScheme | None] = dict.fromkeys(BUILT_IN_SCHEMES)
    for scheme in contributed:
        if not isinstance(scheme, AuthenticationScheme):
            raise TypeError(f"hostkit_add_authentication_schemes returned {scheme!r}, "
                            "which is not an AuthenticationScheme")
        name = scheme.name.lower()
        if name in by_name:
            raise ConfigurationError(f"two authentication schemes are named {name!r}")
        by_name[name] = scheme
    names = [name.lower() for name in options.schemes]
    for index, name in enumerate(names):
        if name not in by_name:
            raise ConfigurationError(
                f"{where}authentication.schemes: unknown scheme {name!r}; "
                f"allowed: {', '.join(sorted(by_name))}")
        if name in names[:index]:
            raise ConfigurationError(f"{where}authentication.schemes lists {name!r} twice")
    schemes = [by_name[name] or _built_in(name, configuration, where) for name in names]
    return Authenticator(schemes, options.authentication_display_name)


def _built_in(name: str, configuration: Configuration, where: str) -> AuthenticationScheme:
    options = configuration.options
    if name == "certificate":
        if options.tls.client_certificate_mode == "none":
            raise ConfigurationError(
                f"{where}authentication.schemes lists 'certificate' but "
                "tls.client_certificate_mode is 'none'; set it to 'optional' or 'required'")
        return CertificateScheme()
    path = configuration.path(options.authentication.users_file)
    if not path.is_file():
        file_source = configuration.source_of("authentication.users_file")
        setting = f"authentication.users_file = {options.authentication.users_file!r}"
        raise ConfigurationError(
            (f"{file_source}: {setting}" if file_source else f"{setting} (the default)")
            + f": no such file ({path}), needed by the basic scheme; create it with "
            "`hostkit users add NAME`")
    return BasicScheme(path)
