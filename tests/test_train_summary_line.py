"""`lsvr train` says its run in one line (model, data, steps, device, RUN), not the ~50 lines
of the resolved config; those are in RUN/config.yaml and behind --verbose (issue 28, item 25)."""

import pytest
import yaml
from tests.support import train


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_the_start_is_one_line_and_the_config_only_with_verbose(tiny_data, tmp_path, capsys, verbose):
    out = tmp_path / "run"
    assert train(out, tiny_data, *(["--verbose"] if verbose else []), **{"train.max_steps": 1}) == 0
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("lsvr train: run ")]
    for part in ("alexnet_small", f"on {tiny_data} (160 images, 10 classes", "1 steps", "device cpu",
                 f"{out}", f"config: {out / 'config.yaml'}"):  # fmt: skip
        assert part in line, line
    config = yaml.safe_dump(yaml.safe_load((out / "config.yaml").read_text()), sort_keys=False, default_flow_style=None)
    shown = [text for text in config.splitlines() if text in err.splitlines()]
    assert len(shown) == (len(config.splitlines()) if verbose else 0), err
