"""Case-insensitive, multi-valued HTTP headers as a view over an ASGI header list."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping

RawHeaders = list[tuple[bytes, bytes]]


def _key(name: str | bytes) -> bytes:
    return (name.encode("latin-1") if isinstance(name, str) else name).lower()


class Headers(MutableMapping[str, str]):
    """Headers of a request or response.

    A view over ``raw``, the ASGI list of ``(name, value)`` byte pairs, so a change made here
    is what the next layer of the pipeline (and an ASGI app) sees. Lookups ignore case;
    ``headers[name]`` is the first value, :meth:`get_all` every value; assignment replaces all
    values of a name, :meth:`add` appends one.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: RawHeaders | Iterable[tuple[str | bytes, str | bytes]] | None = None):
        if raw is None:
            self.raw: RawHeaders = []
        elif isinstance(raw, list) and all(
            isinstance(n, bytes) and isinstance(v, bytes) for n, v in raw
        ):
            self.raw = raw
        else:
            self.raw = [(_key(n), v.encode("latin-1") if isinstance(v, str) else v)
                        for n, v in raw]

    def __getitem__(self, name: str) -> str:
        key = _key(name)
        for n, v in self.raw:
            if n.lower() == key:
                return v.decode("latin-1")
        raise KeyError(name)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order; an empty list when it is absent."""
        key = _key(name)
        return [v.decode("latin-1") for n, v in self.raw if n.lower() == key]

    def __setitem__(self, name: str, value: str) -> None:
        key = _key(name)
        self.raw[:] = [(n, v) for n, v in self.raw if n.lower() != key]
        self.raw.append((key, value.encode("latin-1")))

    def add(self, name: str, value: str) -> None:
        """Append one more value of ``name``, keeping the others."""
        self.raw.append((_key(name), value.encode("latin-1")))

    def __delitem__(self, name: str) -> None:
        key = _key(name)
        kept = [(n, v) for n, v in self.raw if n.lower() != key]
        if len(kept) == len(self.raw):
            raise KeyError(name)
        self.raw[:] = kept

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, (str, bytes)):
            return False
        key = _key(name)
        return any(n.lower() == key for n, _ in self.raw)

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for n, _ in self.raw:
            seen.setdefault(n.decode("latin-1").lower(), None)
        return iter(seen)

    def __len__(self) -> int:
        return len({n.lower() for n, _ in self.raw})

    def items_all(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair in order, names in lower case."""
        return [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in self.raw]

    def __repr__(self) -> str:
        return f"Headers({self.items_all()!r})"
