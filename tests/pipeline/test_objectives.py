"""The one objective registry: names, aliases, units, and which space has which."""

from __future__ import annotations

import pytest
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline import objectives as O
from hilnas.pipeline.spaces import available_spaces


def test_every_registered_space_has_a_quality_objective():
    for space in available_spaces():
        assert O.OBJECTIVES[O.quality_objective(space)].kind == "quality"
    assert O.HARDWARE == ("latency_ms", "energy_mj")
    assert O.UNITS["energy_mj"] == "mJ" and O.LABELS["latency_ms"] == "latency (ms)"


def test_parse_per_space_with_aliases_and_case():
    assert O.parse_objectives("ppl, Latency,energy", "gpt_s") == (
        "perplexity", "latency_ms", "energy_mj"
    )  # fmt: skip
    assert O.parse_objectives(["err", "latency_ms"], "ofa_mbv3") == ("error", "latency_ms")


@pytest.mark.parametrize(
    "value, space, fragment",
    [
        ("error,latency", "gpt_s", "quality objective of nb201, ofa_mbv3"),
        ("perplexity,latency", "nb201", "quality objective of gpt_s"),
        ("error,flops", "nb201", "unknown objective 'flops' for nb201; known: error, latency_ms"),
        ("error,latency,latency_ms", "nb201", "'latency_ms' is given twice"),
        ("latency", "nb201", "need at least two objectives"),
        ("", "nb201", "unknown objective ''"),
    ],
)
def test_bad_objectives_name_the_fix(value, space, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        O.parse_objectives(value, space)


def test_quality_alone_has_no_front_and_the_error_class_is_the_callers():
    with pytest.raises(InvalidInputError, match="no hardware cost; add latency_ms or energy_mj"):
        O.parse_objectives("error", "nb201", min_count=1)

    class MyError(ValueError):
        pass

    with pytest.raises(MyError, match="unknown objective"):
        O.parse_objectives("speed,latency", error=MyError)
    with pytest.raises(InvalidInputError, match="no quality objective here"):
        O.quality_objective("resnet")
