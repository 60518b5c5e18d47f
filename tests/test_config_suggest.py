"""An unknown config key is named with the closest valid keys, not all of them (issue 28, item 26)."""

import pytest

from lsvr.config_file import load_config, valid_keys
from lsvr.errors import InputError


@pytest.mark.parametrize(
    ("override", "suggested"),
    [
        ("data.normalise=channel", "did you mean data.normalize?"),
        ("data.worker=2", "did you mean data.workers?"),
        ("train.lr=0.1", "did you mean optim.lr?"),  # a key of another section
        ("dat.crop=64", "did you mean data?"),
    ],
)
def test_unknown_key_suggests_the_closest(override, suggested):
    with pytest.raises(InputError) as caught:
        load_config(None, [override])
    message = str(caught.value)
    assert suggested in message
    assert "lsvr train --keys" in message  # where the full list is
    assert sum(key in message for key in valid_keys()) <= 3


def test_unknown_key_without_a_close_one_lists_nothing():
    with pytest.raises(InputError) as caught:
        load_config(None, ["optim.learning_rate=0.1"])
    assert "did you mean" not in str(caught.value)
    assert not any(key in str(caught.value) for key in valid_keys())
