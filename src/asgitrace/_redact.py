"""Redaction of credentials before anything is stored (private by default)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, final
from urllib.parse import parse_qsl, quote

__all__ = ["DEFAULT_SECRET_HEADERS", "DEFAULT_SECRET_PATTERN", "REDACTED", "Redactor"]

REDACTED: Final = "[redacted]"
_REDACTED_BYTES: Final = REDACTED.encode()

DEFAULT_SECRET_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-access-token",
        "x-refresh-token",
        "x-csrf-token",
        "x-xsrf-token",
        "x-amz-security-token",
        "x-goog-api-key",
    }
)
"""Header names whose values are never stored."""

DEFAULT_SECRET_PATTERN: Final = (
    r"pass(word|wd)?|pwd|secret|token|auth|session|cookie|credential|signature|"
    r"api[-_]?key|private[-_]?key|access[-_]?key|(^|[-_])key$|^key|jwt|bearer|otp"
)
"""Names (of headers, query parameters, captured locals) that look secret, as a regex."""


@final
@dataclass(frozen=True)
class Redactor:
    """Decides which names are secret and replaces their values with ``[redacted]``.

    Args:
        headers: Header names (any case) that are always redacted.
        pattern: A regular expression searched (case-insensitively) in header names,
            query parameter names and variable names; a match means "secret".
        extra: More exact names to redact, added to *headers* and matched against query
            parameters and variables too.

    .. versionadded:: 0.1
    """

    headers: Iterable[str] = DEFAULT_SECRET_HEADERS
    pattern: str | None = DEFAULT_SECRET_PATTERN
    extra: Iterable[str] = ()
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _verdicts: dict[str | bytes, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = frozenset(n.lower() for n in (*self.headers, *self.extra))
        object.__setattr__(self, "_names", names)
        regex = re.compile(self.pattern, re.IGNORECASE) if self.pattern else None
        object.__setattr__(self, "_regex", regex)
        # Header and parameter names repeat on every request: decide each name once.
        object.__setattr__(self, "_verdicts", {})

    @classmethod
    def from_option(cls, option: Redactor | Iterable[str] | bool | None) -> Redactor:
        """Build a redactor from the ``Tracer(redact=...)`` option.

        ``None`` or ``True`` give the defaults; an iterable of names adds those names to the
        defaults; ``False`` disables redaction (not recommended); a `Redactor` is used as is.
        """
        if option is None or option is True:
            return cls()
        if option is False:
            return cls(headers=(), pattern=None)
        if isinstance(option, Redactor):
            return option
        if isinstance(option, str):
            return cls(extra=(option,))
        return cls(extra=tuple(option))

    def is_secret(self, name: str) -> bool:
        """Return whether a header, query parameter or variable called *name* is secret."""
        verdict = self._verdicts.get(name)
        if verdict is None:
            lowered = name.lower()
            verdict = lowered in self._names or (
                self._regex is not None and self._regex.search(lowered) is not None
            )
            if len(self._verdicts) >= 4096:  # bounded: names come from clients
                self._verdicts.clear()
            self._verdicts[name] = verdict
        return verdict

    def headers_of(self, raw: Sequence[tuple[bytes, bytes]] | None) -> tuple[tuple[str, str], ...]:
        """Decode ASGI headers (latin-1, as HTTP defines) and redact the secret ones.

        Malformed entries are kept as their repr rather than dropped or raised on.
        """
        if not raw:
            return ()
        out: list[tuple[str, str]] = []
        for item in raw:
            try:
                name_b, value_b = item
                name = bytes(name_b).decode("latin-1")
                value = bytes(value_b).decode("latin-1")
            except Exception:
                out.append(("<malformed>", repr(item)[:200]))
                continue
            out.append((name, REDACTED if self.is_secret(name) else value))
        return tuple(out)

    def value_of(self, value: Any, depth: int = 0) -> Any:
        """Return *value* with the values under secret-looking keys redacted.

        Mappings, lists and tuples are copied (at most 50 items each, 3 levels deep;
        deeper containers become ``{…}`` / ``[…]`` rather than going through unchecked);
        other values are returned as they are, for `safe_repr` to bound.
        """
        if isinstance(value, list | tuple):
            if depth > 3:
                return "[…]"
            items = [self.value_of(item, depth + 1) for item in value[:50]]
            if len(value) > 50:
                items.append(f"… {len(value) - 50} more")
            return items if isinstance(value, list) else tuple(items)
        if not isinstance(value, Mapping):
            return value
        if depth > 3:
            return "{…}"
        out: dict[Any, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= 50:
                out["…"] = f"{len(value) - 50} more"
                break
            secret = isinstance(key, str) and self.is_secret(key)
            out[key] = REDACTED if secret else self.value_of(item, depth + 1)
        return out

    def raw_headers_of(
        self, raw: Sequence[tuple[bytes, bytes]] | None
    ) -> tuple[tuple[bytes, bytes], ...]:
        """Like `headers_of` but keeps the bytes (decoding waits until a view asks).

        This is the per-request path: each header name is judged once per process.
        """
        if not raw:
            return ()
        verdicts = self._verdicts
        out: list[tuple[bytes, bytes]] = []
        for item in raw:
            try:
                name, value = item
                secret = verdicts.get(name)
                if secret is None:
                    secret = self.is_secret(bytes(name).decode("latin-1"))
                    verdicts[name] = secret
                out.append((name, _REDACTED_BYTES if secret else bytes(value)))
            except Exception:
                out.append((b"<malformed>", repr(item)[:200].encode("latin-1", "replace")))
        return tuple(out)

    def query_of(self, raw: bytes | str | None) -> str:
        """Return the query string with the values of secret parameters redacted."""
        if not raw:
            return ""
        text = raw.decode("latin-1") if isinstance(raw, bytes | bytearray) else str(raw)
        pairs = parse_qsl(text, keep_blank_values=True)
        if not any(self.is_secret(k) for k, _ in pairs):
            return text
        return "&".join(
            f"{quote(k, safe='')}={REDACTED if self.is_secret(k) else quote(v, safe='')}"
            for k, v in pairs
        )
