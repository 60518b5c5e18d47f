"""Dataset-against-model comparison (lsvr/data/match.py): each field named with both values."""

from dataclasses import replace

import pytest

from lsvr.data.match import differences, require_match
from lsvr.errors import InputError
from lsvr.preprocess import Preprocess

BASE = Preprocess(classes=("a", "b", "c"), size=32, channels=3, resize="center")
NAMES = ("checkpoint", "dataset")


def test_equal_records_have_no_differences():
    assert differences(BASE, replace(BASE), names=NAMES) == []


def test_each_field_is_named_with_both_values_and_the_fix():
    found = replace(BASE, size=28, channels=1, resize="squash")
    problems = differences(BASE, found, names=NAMES)
    assert problems == [
        "size: checkpoint 32, dataset 28 (prepare with --size 32)",
        "channels: checkpoint 3, dataset 1 (prepare with --channels 3)",
        "resize: checkpoint 'center', dataset 'squash' (prepare with --resize center)",
    ]


def test_classes_in_another_order_are_told_apart_from_other_classes():
    (order,) = differences(BASE, replace(BASE, classes=("a", "c", "b")), names=NAMES)
    assert "same 3 names in another order" in order and "index 1" in order
    (other,) = differences(BASE, replace(BASE, classes=("a", "b", "z")), names=NAMES)
    assert "only in the checkpoint: 'c'" in other and "only in the dataset: 'z'" in other


def test_a_field_one_side_does_not_record_is_not_compared():
    assert differences(replace(BASE, resize=None), replace(BASE, resize="pad"), names=NAMES) == []


def test_require_match_raises_naming_the_place():
    with pytest.raises(InputError, match=r"^val: does not match the checkpoint: channels: checkpoint 3, dataset 1"):
        require_match(BASE, replace(BASE, channels=1), where="val", names=NAMES)
