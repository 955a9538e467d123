"""Where each key of a TOML document is written, so a configuration error can name its line.

tomllib gives values but no positions. :func:`key_lines` follows table headers, dotted keys
and inline tables over a document tomllib has already accepted, so it only has to know where
each value ends, not to check it.
"""

from __future__ import annotations

from hostkit._compat import tomllib

KeyPath = tuple[str, ...]

_BARE_KEY_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# What ends a number, boolean or date (a date may hold a space, so a space does not).
_SCALAR_END = frozenset(",]}#\r\n")


def key_lines(text: str) -> dict[KeyPath, int]:
    """The line (from 1) where each key path of the TOML ``text`` is first written.

    A key is written by its assignment (``key = …``, ``a.b = …`` under the current table
    header), by a table header (``[a.b]``, ``[[a]]``) or inside an inline table; a table
    made only of dotted keys or deeper headers gets the line of the first of them. Paths hold
    the keys as tomllib reads them (quotes removed, case kept). Should the text surprise the
    scanner (it cannot once tomllib has read it), what was found up to there is returned.
    """
    scanner = _Scanner(text)
    try:
        scanner.document()
    except (IndexError, ValueError, tomllib.TOMLDecodeError):
        pass
    return scanner.lines


class _Scanner:
    """One pass over a TOML document; ``lines`` fills in as keys are met."""

    def __init__(self, text: str):
        self.text = text
        self.position = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}

    def document(self) -> None:
        table: KeyPath = ()
        text = self.text
        while True:
            self.skip_blank(newlines=True)
            if self.position >= len(text):
                return
            if text.startswith("[[", self.position):
                self.position += 2
                table = self.key()
                self.expect("]]")
                self.record(table)
            elif text[self.position] == "[":
                self.position += 1
                table = self.key()
                self.expect("]")
                self.record(table)
            else:
                self.key_value(table)

    def record(self, path: KeyPath) -> None:
        for length in range(1, len(path) + 1):
            self.lines.setdefault(path[:length], self.line)

    def key_value(self, prefix: KeyPath | None) -> None:
        """``key = value``; recorded under ``prefix`` unless it is None (inside an array)."""
        path = self.key()
        if prefix is not None:
            self.record(prefix + path)
        self.expect("=")
        self.value(None if prefix is None else prefix + path)

    def key(self) -> KeyPath:
        parts = []
        while True:
            self.skip_blank()
            parts.append(self.key_part())
            self.skip_blank()
            if self.text[self.position:self.position + 1] != ".":
                return tuple(parts)
            self.position += 1

    def key_part(self) -> str:
        text, start = self.text, self.position
        if text[start] in "\"'":
            self.string()
            key: str = tomllib.loads(f"key = {text[start:self.position]}")["key"]
            return key
        end = start
        while end < len(text) and text[end] in _BARE_KEY_CHARACTERS:
            end += 1
        if end == start:
            raise ValueError(f"no key at offset {start}")
        self.position = end
        return text[start:end]

    def expect(self, token: str) -> None:
        self.skip_blank()
        if not self.text.startswith(token, self.position):
            raise ValueError(f"expected {token!r} at offset {self.position}")
        self.position += len(token)

    def value(self, path: KeyPath | None) -> None:
        self.skip_blank()
        character = self.text[self.position]
        if character in "\"'":
            self.string()
        elif character == "[":
            self.array()
        elif character == "{":
            self.inline_table(path)
        else:
            text, end = self.text, self.position
            while end < len(text) and text[end] not in _SCALAR_END:
                end += 1
            self.position = end

    def array(self) -> None:
        self.position += 1
        while True:
            self.skip_blank(newlines=True)
            if self.text[self.position] == "]":
                self.position += 1
                return
            self.value(None)
            self.skip_blank(newlines=True)
            if self.text[self.position] == ",":
                self.position += 1

    def inline_table(self, path: KeyPath | None) -> None:
        self.position += 1
        while True:
            self.skip_blank(newlines=True)
            if self.text[self.position] == "}":
                self.position += 1
                return
            self.key_value(path)
            self.skip_blank(newlines=True)
            if self.text[self.position] == ",":
                self.position += 1

    def string(self) -> None:
        """Step over a basic, literal or multi-line string, counting the lines it spans."""
        text, start = self.text, self.position
        quote = text[start]
        if text.startswith(quote * 3, start):
            end = self._string_end(start + 3, quote * 3, escapes=quote == '"')
            # A multi-line string may end with one or two quotes of its own before the three.
            for _ in range(2):
                if text[end:end + 1] == quote:
                    end += 1
        else:
            end = self._string_end(start + 1, quote, escapes=quote == '"')
        self.line += text.count("\n", start, end)
        self.position = end

    def _string_end(self, index: int, closing: str, escapes: bool) -> int:
        text = self.text
        if not escapes:
            return text.index(closing, index) + len(closing)
        while True:
            if text[index] == "\\":
                index += 2
            elif text.startswith(closing, index):
                return index + len(closing)
            else:
                index += 1

    def skip_blank(self, newlines: bool = False) -> None:
        """Step over spaces and tabs; with ``newlines``, over line ends and comments too."""
        text, index = self.text, self.position
        while index < len(text):
            character = text[index]
            if character in " \t":
                index += 1
            elif newlines and character == "\n":
                self.line += 1
                index += 1
            elif newlines and character == "\r":
                index += 1
            elif newlines and character == "#":
                while index < len(text) and text[index] != "\n":
                    index += 1
            else:
                break
        self.position = index
