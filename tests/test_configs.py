"""Config values from JSON and KEY=VALUE flags are checked against the field annotations."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from synthlab.configs import check_field_types


@dataclass
class _Example:
    rate: float = 0.1
    count: int = 2
    span: tuple[float, float] = (0.0, 1.0)
    sizes: tuple[int, ...] = (1, 2)
    window: int | None = None
    flag: bool = False


@pytest.mark.parametrize("values", [{"rate": 1}, {"rate": 0.5}, {"span": (1, 2.5)}, {"sizes": (4,)},
                                    {"window": None}, {"window": 3}, {"flag": True}])
def test_values_of_the_right_type_pass(values: dict) -> None:
    check_field_types(_Example, values)


@pytest.mark.parametrize(("values", "message"), [
    ({"rate": "hot"}, "rate must be a number"), ({"count": 2.0}, "count must be an integer"),
    ({"count": True}, "count must be an integer"), ({"span": (1, "x")}, "span must be a list of 2"),
    ({"sizes": (1, 2.5)}, "sizes must be a list of integers"), ({"window": "big"}, "window must be an integer or null"),
    ({"flag": 1}, "flag must be true or false")])
def test_wrong_types_name_the_field(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_field_types(_Example, values, prefix="")
