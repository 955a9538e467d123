"""Claims-based identity, after System.Security.Claims (SPEC §6)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator


class ClaimTypes:
    """Standard claim types."""

    NAME = "name"
    ROLE = "role"
    NAME_IDENTIFIER = "nameidentifier"
    EMAIL = "email"
    AUTHENTICATION_METHOD = "authenticationmethod"
    COMMON_NAME = "cn"
    ORGANIZATION = "o"
    ORGANIZATIONAL_UNIT = "ou"
    COUNTRY = "c"
    THUMBPRINT = "thumbprint"
    X500_DISTINGUISHED_NAME = "x500distinguishedname"
    SERIAL_NUMBER = "serialnumber"


@dataclasses.dataclass(frozen=True)
class Claim:
    """One statement about a subject: its ``type`` and ``value``."""

    type: str
    value: str


class ClaimsIdentity:
    """One identity: a set of claims and how they were authenticated.

    ``is_authenticated`` is true when ``authentication_type`` is set; ``name`` is the value of
    the first name claim, or ``None``.
    """

    def __init__(self, claims: Iterable[Claim] = (), authentication_type: str | None = None,
                 name_type: str = ClaimTypes.NAME, role_type: str = ClaimTypes.ROLE):
        self.claims: list[Claim] = list(claims)
        self.authentication_type = authentication_type or None
        self.name_type = name_type
        self.role_type = role_type

    @property
    def is_authenticated(self) -> bool:
        return self.authentication_type is not None

    @property
    def name(self) -> str | None:
        claim = self.find_first(self.name_type)
        return claim.value if claim is not None else None

    def find_first(self, type: str) -> Claim | None:
        return next((c for c in self.claims if c.type == type), None)

    def has_claim(self, type: str, value: str) -> bool:
        return any(c.type == type and c.value == value for c in self.claims)

    def add_claim(self, claim: Claim) -> None:
        self.claims.append(claim)

    def __repr__(self) -> str:
        return (f"ClaimsIdentity(claims={self.claims!r}, "
                f"authentication_type={self.authentication_type!r})")


class ClaimsPrincipal:
    """The user of a request: one or more identities. ``identity`` is the first of them.

    ``ClaimsPrincipal()``, with no identities, is anonymous: one unauthenticated identity
    with no claims, made on first use (the request stage makes an anonymous principal for
    every request, and most are never looked at).
    """

    def __init__(self, identities: Iterable[ClaimsIdentity] | ClaimsIdentity | None = None):
        if identities is None:
            return  # anonymous: see identities; new_anonymous_principal relies on this
        if isinstance(identities, ClaimsIdentity):
            identities = [identities]
        self._identities = list(identities) or [ClaimsIdentity()]

    @classmethod
    def anonymous(cls) -> ClaimsPrincipal:
        """A principal nobody authenticated: ``ClaimsPrincipal()``."""
        return cls()

    @property
    def identities(self) -> list[ClaimsIdentity]:
        identities: list[ClaimsIdentity] | None = getattr(self, "_identities", None)
        if identities is None:  # anonymous, and first asked
            identities = self._identities = [ClaimsIdentity()]
        return identities

    @identities.setter
    def identities(self, identities: list[ClaimsIdentity]) -> None:
        self._identities = identities

    @property
    def identity(self) -> ClaimsIdentity:
        return self.identities[0]

    @property
    def claims(self) -> Iterator[Claim]:
        for identity in self.identities:
            yield from identity.claims

    def find_first(self, type: str) -> Claim | None:
        return next((c for c in self.claims if c.type == type), None)

    def has_claim(self, type: str, value: str) -> bool:
        return any(i.has_claim(type, value) for i in self.identities)

    def is_in_role(self, role: str) -> bool:
        return any(i.has_claim(i.role_type, role) for i in self.identities)

    def add_identity(self, identity: ClaimsIdentity) -> None:
        self.identities.append(identity)

    def __repr__(self) -> str:
        return f"ClaimsPrincipal({self.identities!r})"


#: ``ClaimsPrincipal()`` in one C-level call, for code on the path of every request (the
#: request stage): the constructor of an anonymous principal sets nothing, so it is skipped.
new_anonymous_principal: Callable[[], ClaimsPrincipal] = functools.partial(
    object.__new__, ClaimsPrincipal)
