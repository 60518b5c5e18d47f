"""model.init_from and `lsvr convert` on weights that do not fit: another architecture names the
first key that differs with both shapes; another class count re-initialises the head; a
truncated file is named as such. Each exits 2 with one line."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tests.support import cli, one_line, train
from torch import nn

from lsvr.errors import InputError
from lsvr.models import googlenet, resnet
from lsvr.models.registry import build_model
from lsvr.models.weights import load_matching, read_state_dict


def _small(width: int = 8, classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3), nn.BatchNorm2d(width), nn.Linear(width, classes))


def _refusal(model: nn.Module, state: dict) -> str:
    with pytest.raises(InputError) as refused:
        load_matching(model, state, source="w.pt")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("w.pt: its tensors do not fit this model"), message
    return message


def test_another_shape_names_the_first_differing_key_with_both_shapes():
    message = _refusal(_small(width=8), _small(width=16).state_dict())
    assert message.endswith("0.weight is (16, 3, 3, 3) in the file, (8, 3, 3, 3) in the model")


def test_a_key_missing_on_either_side_is_named_as_missing():
    state = _small().state_dict()
    del state["1.running_var"]
    assert _refusal(_small(), state).endswith("1.running_var is missing in the file (the model's is (8,))")
    longer = nn.Sequential(*_small(), nn.Linear(10, 10)).state_dict()
    assert _refusal(_small(), longer).endswith("3.weight ((10, 10) in the file) is missing in the model")


@pytest.mark.slow  # the first model built on the meta device costs 2 s
def test_resnet34_weights_do_not_load_into_resnet18():
    with torch.device("meta"):  # resnet34's first blocks have resnet18's shapes; it has more of them
        r18, r34 = resnet.resnet18(num_classes=10), resnet.resnet34(num_classes=10)
    assert _refusal(r18, r34.state_dict()).endswith("layer1.2.conv1.weight ((64, 64, 3, 3) in the file) is missing"
                                                    " in the model")  # fmt: skip


def test_another_class_count_reinitialises_the_head_alone():
    source, target = _small(classes=10), _small(classes=7)
    fresh = target.state_dict()["2.weight"].clone()
    assert load_matching(target, source.state_dict(), source="w.pt") == ["2.weight", "2.bias"]
    assert torch.equal(target[0].weight, source[0].weight) and torch.equal(target[2].weight, fresh)


@pytest.mark.slow  # the first model built on the meta device costs 2 s
def test_what_a_torchvision_file_holds_beyond_the_model_loads():
    """torchvision's googlenet files hold the aux heads (a model built without them ignores them);
    files older than torch 0.4.1 lack BatchNorm's num_batches_tracked (the counter stays at 0)."""
    with torch.device("meta"):
        with_aux = googlenet.googlenet(num_classes=10, aux_logits=True).state_dict()
        plain = googlenet.googlenet(num_classes=10)
    assert any(k.startswith("aux1.") for k in with_aux) and load_matching(plain, with_aux, source="g.pth") == []
    source = _small()
    old = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert load_matching(_small(), old, source="w.pt") == []


def test_truncated_files_are_named_truncated(tmp_path):
    torch.save(_small().state_dict(), tmp_path / "w.pt")
    torch.save(_small().state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file(_small().state_dict(), tmp_path / "w.safetensors")
    for name, needle in (("w.pt", "a truncated or damaged weights file"), ("legacy.pt", "a truncated weights file"),
                         ("w.safetensors", "a truncated or unreadable safetensors file")):  # fmt: skip
        path = tmp_path / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(InputError, match=f"^{path}: {needle}"):
            read_state_dict(Path(path))


def test_convert_of_a_truncated_file_exits_2_in_one_line(tmp_path, capsys):
    path = tmp_path / "alexnet.pth"
    torch.save(_small().state_dict(), path)
    path.write_bytes(path.read_bytes()[:500])
    capsys.readouterr()
    assert cli("convert", path, tmp_path / "out.pt") == 2
    one_line(capsys, f"{path}: a truncated or damaged weights file")


def test_init_from_weights_of_another_model_exits_2_naming_file_and_key(tiny_data, tmp_path, capsys):
    path = tmp_path / "half-width.pt"  # the debug config's alexnet_small, at another width
    torch.save(build_model("alexnet_small", num_classes=10, in_channels=1, crop=28, width=0.5).state_dict(), path)
    capsys.readouterr()
    assert train(tmp_path / "run", tiny_data, **{"model.init_from": path, "train.max_steps": 1}) == 2
    one_line(capsys, f"{path}: its tensors do not fit this model", "features.conv1.weight is (32, 1, 5, 5) in the"
             " file, (64, 1, 5, 5) in the model")  # fmt: skip
