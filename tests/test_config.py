from dataclasses import dataclass
from typing import Literal

import pytest

from benchmark.engine.config import apply_overrides, parse_assignments, parse_value
from benchmark.errors import BadInput


@dataclass
class Cfg:
    epochs: int = 5
    lr: float = 1e-3
    flag: bool = False
    mode: Literal["official", "as_published"] = "official"
    patience: int | None = 10
    sizes: tuple[int, ...] = (256, 128)


@pytest.mark.parametrize("annotation,text,expected", [
    (int, "12", 12), (float, "0.5", 0.5), (float, "1e-3", 1e-3), (bool, "true", True), (bool, "0", False),
    (int | None, "none", None), (int | None, "3", 3), (tuple[int, ...], "64x32", (64, 32)),
    (tuple[int, ...], "[8,4,2]", (8, 4, 2)), (Literal["a", "b"], "b", "b"), (float, 2, 2.0),
])
def test_parse_value(annotation, text, expected):
    assert parse_value(annotation, text) == expected


@pytest.mark.parametrize("annotation,text", [(int, "abc"), (int, "1.5"), (bool, "maybe"), (Literal["a", "b"], "c"),
                                             (float, "fast"), (int, True)])
def test_parse_value_rejects(annotation, text):
    with pytest.raises(ValueError):
        parse_value(annotation, text)


def test_overrides_are_typed_and_unknown_keys_rejected():
    cfg = apply_overrides(Cfg(), {"epochs": "7", "mode": "as_published", "sizes": "4x2"}, where="m")
    assert (cfg.epochs, cfg.mode, cfg.sizes) == (7, "as_published", (4, 2))
    with pytest.raises(BadInput, match="unknown parameter 'epoch'"):
        apply_overrides(Cfg(), {"epoch": "7"}, where="m")
    with pytest.raises(BadInput, match="'epochs'"):
        apply_overrides(Cfg(), {"epochs": "abc"}, where="m")


def test_parse_assignments():
    assert parse_assignments(["a=1", "b = x"]) == {"a": "1", "b": "x"}
    with pytest.raises(BadInput):
        parse_assignments(["novalue"])
