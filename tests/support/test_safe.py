"""safe_repr: bounded, never-raising representations of user values."""

from __future__ import annotations

from typing import Any

import pytest

from asgitrace._support._safe import MAX_REPR, safe_repr


@pytest.mark.parametrize(
    "value", [None, 42, 1.5, "text", b"bytes", [1, 2], {"a": 1}, (1,), {3}], ids=repr
)
def test_small_values_look_like_their_repr(value: Any) -> None:
    assert safe_repr(value) == repr(value)


def test_long_text_is_cut_to_the_limit_with_an_ellipsis() -> None:
    text = safe_repr("x" * 10_000)

    assert len(text) <= MAX_REPR
    assert text.startswith("'xxx")


def test_custom_limit_is_honoured() -> None:
    class Wordy:
        def __repr__(self) -> str:
            return "w" * 50

    assert safe_repr(Wordy(), limit=10) == "w" * 9 + "…"
    assert safe_repr(Wordy(), limit=50) == "w" * 50


def test_huge_containers_are_abbreviated_to_their_first_items() -> None:
    huge_list = list(range(1_000_000))
    huge_dict = {i: str(i) for i in range(100_000)}

    texts = [safe_repr(huge_list), safe_repr(huge_dict), safe_repr(tuple(huge_list))]

    assert texts == [
        "[0, 1, 2, 3, 4, 5, 6, 7, ...]",
        "{0: '0', 1: '1', 2: '2', 3: '3', 4: '4', 5: '5', 6: '6', 7: '7', ...}",
        "(0, 1, 2, 3, 4, 5, 6, 7, ...)",
    ]


def test_deep_nesting_is_abbreviated() -> None:
    deep: list[Any] = []
    for _ in range(50):
        deep = [deep]

    assert safe_repr(deep) == "[[[[...]]]]"


def test_raising_repr_gives_a_placeholder_naming_the_type() -> None:
    class Grumpy:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    text = safe_repr(Grumpy())

    assert "Grumpy" in text
    assert text.startswith("<")


def test_container_that_breaks_while_iterating_gives_a_placeholder() -> None:
    def broken_iter(self: Any) -> Any:
        raise RuntimeError("iteration broke")

    # reprlib picks its container handler by type name: a broken "dict" reaches it.
    broken = type("dict", (), {"__len__": lambda self: 1, "__iter__": broken_iter})()

    assert safe_repr(broken) == "<dict object; repr failed: RuntimeError>"


def test_base_exceptions_from_repr_are_not_swallowed() -> None:
    class Interrupting:
        def __repr__(self) -> str:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        safe_repr(Interrupting())
