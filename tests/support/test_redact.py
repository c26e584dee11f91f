"""Redactor: which names are secret, and how headers, queries and values are redacted."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from asgitrace import Redactor
from asgitrace._support._redact import DEFAULT_SECRET_HEADERS, REDACTED
from asgitrace._support._safe import safe_repr


def test_the_default_secret_headers_are_these_names() -> None:
    """Written out, not read from the constant: dropping one must fail (issue 21)."""
    assert sorted(DEFAULT_SECRET_HEADERS) == [
        "api-key",
        "apikey",
        "authorization",
        "cookie",
        "proxy-authorization",
        "set-cookie",
        "x-access-token",
        "x-amz-security-token",
        "x-api-key",
        "x-auth-token",
        "x-csrf-token",
        "x-goog-api-key",
        "x-refresh-token",
        "x-xsrf-token",
    ]


@pytest.mark.parametrize("name", ["Authorization", "proxy-authorization", "Cookie", "x-api-key"])
def test_default_secret_headers_are_secret_without_the_pattern(name: str) -> None:
    assert Redactor(pattern=None).is_secret(name) is True


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "COOKIE",
        "X-Session-Id",
        "password",
        "passwd",
        "client_secret",
        "access_token",
        "api_key",
        "apiKey",
        "api-key",
        "private_key",
        "x-signature",
        "jwt",
        "key",
        "sort_key",
        "otp",
        "credentials",
    ],
)
def test_names_that_look_secret_are_secret_in_any_case(name: str) -> None:
    assert Redactor().is_secret(name) is True


@pytest.mark.parametrize(
    "name",
    ["accept", "content-type", "user-agent", "host", "q", "page", "monkey", "x-request-id"],
)
def test_ordinary_names_are_not_secret(name: str) -> None:
    assert Redactor().is_secret(name) is False


def test_without_a_pattern_only_listed_names_are_secret() -> None:
    redactor = Redactor(headers=("x-secret-sauce",), pattern=None)

    assert (redactor.is_secret("X-Secret-Sauce"), redactor.is_secret("password")) == (True, False)


def test_extra_names_are_secret_in_any_case() -> None:
    redactor = Redactor(extra=("X-Tenant",))

    assert (redactor.is_secret("x-tenant"), redactor.is_secret("authorization")) == (True, True)


def test_custom_pattern_replaces_the_default_one() -> None:
    redactor = Redactor(headers=(), pattern=r"^x-internal-")

    assert (redactor.is_secret("X-Internal-Route"), redactor.is_secret("password")) == (True, False)


@pytest.mark.parametrize(
    ("option", "secret", "plain"),
    [
        pytest.param(None, ["authorization", "password"], ["x-tenant"], id="None: defaults"),
        pytest.param(True, ["authorization", "password"], ["x-tenant"], id="True: defaults"),
        pytest.param(False, [], ["authorization", "password", "cookie"], id="False: nothing"),
        pytest.param("x-tenant", ["x-tenant", "cookie"], ["accept"], id="a name"),
        pytest.param(["x-tenant", "x-org"], ["x-tenant", "x-org", "cookie"], [], id="names"),
        pytest.param(("x-org",), ["x-org"], ["x-tenant"], id="tuple of names"),
    ],
)
def test_from_option_builds_the_documented_redactor(
    option: Any, secret: list[str], plain: list[str]
) -> None:
    redactor = Redactor.from_option(option)

    assert [redactor.is_secret(n) for n in secret] == [True] * len(secret)
    assert [redactor.is_secret(n) for n in plain] == [False] * len(plain)


def test_from_option_keeps_a_redactor_as_is() -> None:
    redactor = Redactor(pattern=None)

    assert Redactor.from_option(redactor) is redactor


def test_redactors_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Redactor().pattern = None  # type: ignore[misc]


def test_redactors_with_the_same_settings_are_equal() -> None:
    assert Redactor(extra=("a",)) == Redactor(extra=("a",))
    assert Redactor(extra=("a",)) != Redactor(extra=("b",))


# --- Headers -------------------------------------------------------------------------------------


def test_headers_are_decoded_as_latin_1_and_secret_values_replaced() -> None:
    raw = [
        (b"Host", b"example.org"),
        (b"authorization", b"Bearer abc"),
        (b"x-name", "café".encode("latin-1")),
        [b"cookie", b"a=b"],
    ]

    assert Redactor().headers_of(raw) == (
        ("Host", "example.org"),
        ("authorization", REDACTED),
        ("x-name", "café"),
        ("cookie", REDACTED),
    )


def test_headers_keep_their_order_and_duplicates() -> None:
    raw = [(b"set-cookie", b"a=1"), (b"vary", b"accept"), (b"set-cookie", b"b=2")]

    assert Redactor().headers_of(raw) == (
        ("set-cookie", REDACTED),
        ("vary", "accept"),
        ("set-cookie", REDACTED),
    )


@pytest.mark.parametrize("raw", [None, [], ()])
def test_no_headers_give_an_empty_tuple(raw: Any) -> None:
    assert Redactor().headers_of(raw) == ()


def test_malformed_header_entries_keep_a_usable_name_and_never_their_value() -> None:
    raw = [(b"a", b"1"), (b"only-a-name",), ("x" * 500, b"v", b"extra"), (b"b", None)]

    headers = Redactor().headers_of(raw)

    assert headers == (
        ("a", "1"),
        ("only-a-name", "[redacted]"),
        ("<malformed>", "[redacted]"),
        ("b", "[redacted]"),
    )


def test_without_redaction_headers_are_only_decoded() -> None:
    raw = [(b"authorization", b"Bearer abc")]

    assert Redactor.from_option(False).headers_of(raw) == (("authorization", "Bearer abc"),)


# --- Query strings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"token=abc&q=1", "token=[redacted]&q=1", id="bytes"),
        pytest.param("token=abc&q=1", "token=[redacted]&q=1", id="text"),
        pytest.param(b"q=1&API_KEY=zzz", "q=1&API_KEY=[redacted]", id="any case"),
        pytest.param(b"password=&q=", "password=[redacted]&q=", id="blank values"),
        pytest.param(b"token=a&token=b", "token=[redacted]&token=[redacted]", id="repeated"),
        pytest.param(b"%74oken=abc", "token=[redacted]", id="percent-encoded name"),
        pytest.param(b"token=x&q=a%20b%26c", "token=[redacted]&q=a%20b%26c", id="values re-quoted"),
    ],
)
def test_secret_query_values_are_redacted(raw: bytes | str, expected: str) -> None:
    assert Redactor().query_of(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [b"q=a+b&page=2", b"q=%E2%9C%93", b"flag", b"a=1;b=2"],
    ids=["plus", "utf8", "bare", "semi"],
)
def test_query_without_secrets_is_kept_verbatim(raw: bytes) -> None:
    assert Redactor().query_of(raw) == raw.decode("latin-1")


@pytest.mark.parametrize("raw", [None, b"", ""])
def test_empty_query_gives_an_empty_string(raw: Any) -> None:
    assert Redactor().query_of(raw) == ""


def test_secret_values_never_survive_query_redaction() -> None:
    redacted = Redactor().query_of(b"q=1&session=SECRET-SESSION&x_auth=SECRET-AUTH")

    assert "SECRET" not in redacted


# --- Values (returned values, captured locals) ---------------------------------------------------


def test_values_under_secret_keys_are_redacted_in_nested_mappings() -> None:
    value = {"user": {"name": "ann", "password": "hunter2"}, "token": "t", 1: "one"}

    assert Redactor().value_of(value) == {
        "user": {"name": "ann", "password": REDACTED},
        "token": REDACTED,
        1: "one",
    }
    assert value["token"] == "t"  # the app's own value is untouched


@pytest.mark.parametrize("value", [None, 3, "password", b"token", 1.5])
def test_non_mapping_values_are_returned_as_they_are(value: Any) -> None:
    assert Redactor().value_of(value) is value


def test_large_mappings_are_cut_after_fifty_items() -> None:
    value = {f"k{i}": i for i in range(80)}

    redacted = Redactor().value_of(value)

    assert list(redacted)[:50] == [f"k{i}" for i in range(50)]
    assert redacted["…"] == "30 more"
    assert len(redacted) == 51


def test_mapping_of_exactly_fifty_items_is_complete() -> None:
    value = {f"k{i}": i for i in range(50)}

    assert Redactor().value_of(value) == value


def test_secret_values_inside_sequences_are_redacted() -> None:
    value = [{"name": "ann", "api_token": "SECRET"}]

    assert "SECRET" not in repr(Redactor().value_of(value))


def test_secret_values_deeper_than_the_limit_are_not_returned() -> None:
    value = {"a": {"b": {"c": {"d": {"password": "SECRET"}}}}}

    assert "SECRET" not in repr(Redactor().value_of(value))


# --- repr_of: the text stored for a value (value_of, then safe_repr, in one pass) ------------


@dataclasses.dataclass
class _Login:
    name: str
    password: str
    roles: list[str]


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class _Email(str):
    pass


def _atom(rnd: random.Random) -> Any:
    return rnd.choice(
        [None, True, 0, -7, 10**60, 3.5, float("nan"), "x", "password", "a" * 300, "é\n'\"",
         b"raw", b"b" * 300, "…", _Email("a@b.c")]
    )  # fmt: skip


def _value(rnd: random.Random, depth: int = 0) -> Any:
    pick = rnd.random()
    if depth > 4 or pick < 0.35:
        return _atom(rnd)
    size = rnd.choice([0, 1, 2, 8, 9, 50, 51, 60] if depth < 2 else [0, 1, 2, 9])
    if pick < 0.55:
        keys = ["a", "b", "token", "Z", 1, 2.5, None, b"k", (1, 2), "…", True, frozenset()]
        return {rnd.choice(keys): _value(rnd, depth + 1) for _ in range(size)}
    if pick < 0.7:
        return [_value(rnd, depth + 1) for _ in range(size)]
    if pick < 0.8:
        return tuple(_value(rnd, depth + 1) for _ in range(min(size, 9)))
    if pick < 0.85:
        return set(rnd.sample(range(100), min(size, 12)))
    if pick < 0.92:
        return _Login("ann", "hunter2", [_value(rnd, depth + 1)])
    return rnd.choice([_Unprintable(), object(), frozenset({1, 2}), range(3)])


def test_repr_of_is_the_bounded_repr_of_the_redacted_copy() -> None:
    # The one-pass text must equal what the two passes give, for every shape of value:
    # cut containers, unsortable keys, deep nesting, long strings and ints, objects.
    redactor = Redactor()
    rnd = random.Random(8)
    for _ in range(3000):
        value = _value(rnd)
        assert redactor.repr_of(value) == safe_repr(redactor.value_of(value)), value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"user": "ann", "password": "hunter2"}, "{'password': '[redacted]', 'user': 'ann'}"),
        (_Login("ann", "pw", []), "_Login(name='ann', password='[redacted]', roles=[])"),
        ([[[["deep"]]]], "[[[[...]]]]"),
        ((1,), "(1,)"),
        ({f"k{i}": i for i in range(60)}, "{'k0': 0, 'k1': 1, 'k10': 10, 'k11': 11, "
         "'k12': 12, 'k13': 13, 'k14': 14, 'k15': 15, ...}"),
        ({f"一{i:02}": i for i in range(60)}, "{'…': '10 more', '一00': 0, '一01': 1, "
         "'一02': 2, '一03': 3, '一04': 4, '一05': 5, '一06': 6, ...}"),
    ],
)  # fmt: skip
def test_repr_of_redacts_and_bounds(value: Any, text: str) -> None:
    assert Redactor().repr_of(value) == text


def test_repr_of_names_a_value_whose_repr_raises() -> None:
    class Grumpy(int):
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert Redactor().repr_of([Grumpy(1)]).startswith("[<Grumpy instance at 0x")


def test_repr_of_cuts_to_the_limit() -> None:
    text = Redactor().repr_of(["x" * 150, "y" * 150])

    assert len(text) == 200
    assert text.endswith("…")


def test_repr_of_uses_a_subclass_s_own_copy() -> None:
    class Shouting(Redactor):
        def value_of(self, value: Any, depth: int = 0) -> Any:
            return str(value).upper()

    assert Shouting().repr_of({"a": "b"}) == "\"{'A': 'B'}\""


def test_repr_of_reads_other_mappings_and_keeps_unsortable_keys_in_order() -> None:
    class Odd(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            return 1

        def __len__(self) -> int:
            return 1

        def __iter__(self) -> Iterator[str]:
            return iter(["a"])

    redactor = Redactor()
    assert redactor.repr_of(Odd()) == "{'a': 1}"
    assert redactor.repr_of({"b": 1, 2: 2, "a": 3}) == "{'b': 1, 2: 2, 'a': 3}"


def test_repr_of_falls_back_to_the_copy_when_the_one_pass_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: Redactor, value: Any, depth: int) -> str:
        raise RuntimeError("one pass exploded")

    monkeypatch.setattr(Redactor, "_repr", broken)

    assert Redactor().repr_of({"token": "t", "n": 1}) == "{'n': 1, 'token': '[redacted]'}"


# --- Raw headers (the per-request path: bytes kept, decoded when a view asks) -------------------


def test_raw_headers_keep_bytes_and_redact_secret_values() -> None:
    raw = [(b"Authorization", b"Bearer abc"), (b"accept", b"*/*"), (b"authorization", b"again")]

    assert Redactor().raw_headers_of(raw) == (
        (b"Authorization", REDACTED.encode()),
        (b"accept", b"*/*"),
        (b"authorization", REDACTED.encode()),
    )


@pytest.mark.parametrize("raw", [None, []])
def test_no_raw_headers_give_an_empty_tuple(raw: Any) -> None:
    assert Redactor().raw_headers_of(raw) == ()


def test_malformed_raw_header_entries_are_stored_redacted() -> None:
    headers = Redactor().raw_headers_of([(b"only-a-name",), (b"a", b"1")])

    assert headers == ((b"only-a-name", b"[redacted]"), (b"a", b"1"))


def test_verdict_cache_stays_bounded_and_correct() -> None:
    redactor = Redactor()

    verdicts = [redactor.is_secret(f"x-name-{i}") for i in range(5000)]

    assert set(verdicts) == {False}
    assert len(redactor._verdicts) <= 4096  # names come from clients: memory is bounded
    assert (redactor.is_secret("password"), redactor.is_secret("x-name-1")) == (True, False)


def test_exactly_the_header_cap_is_kept_whole() -> None:
    raw = [(b"x-h%d" % i, b"v") for i in range(100)]
    assert Redactor().raw_headers_of(raw) == tuple(raw)


def test_one_header_past_the_cap_is_counted_not_kept() -> None:
    raw = [(b"x-h%d" % i, b"v") for i in range(101)]
    assert Redactor().raw_headers_of(raw) == (*raw[:100], (b"<more headers>", b"1"))


@pytest.mark.parametrize("sightings", [1, 2], ids=["first-sight", "cached-name"])
def test_a_value_of_exactly_the_size_cap_is_kept_whole(sightings: int) -> None:
    redactor = Redactor()
    for _ in range(sightings):
        out = redactor.raw_headers_of([(b"x-big", b"a" * 1024)])
    assert out == ((b"x-big", b"a" * 1024),)


@pytest.mark.parametrize("sightings", [1, 2], ids=["first-sight", "cached-name"])
def test_a_value_one_byte_past_the_size_cap_is_cut(sightings: int) -> None:
    redactor = Redactor()
    for _ in range(sightings):
        out = redactor.raw_headers_of([(b"x-big", b"a" * 1025)])
    assert out == ((b"x-big", b"a" * 1024 + b"...(+1 bytes)"),)


def test_secret_parameters_in_a_url_headers_fragment_are_redacted() -> None:
    raw = [(b"Location", b"/cb?page=2&token=abc#access_token=xyz&state=1")]
    assert Redactor().raw_headers_of(raw) == (
        (b"Location", b"/cb?page=2&token=[redacted]#access_token=[redacted]&state=1"),
    )
