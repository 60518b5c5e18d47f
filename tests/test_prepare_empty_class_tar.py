"""An ILSVRC-layout train tar holding an empty inner class tar is refused naming it, as an empty
class folder is: before, its class vanished without a word ("prepared 2 images of 1 classes")."""

import io
import tarfile

import numpy as np
from PIL import Image
from tests.support import cli, one_line


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _class_tar(images: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as inner:
        for i in range(images):
            jpeg = io.BytesIO()
            Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(jpeg, "JPEG")
            _add(inner, f"n01_{i}.JPEG", jpeg.getvalue())
    return buffer.getvalue()


def test_an_empty_inner_class_tar_is_refused_naming_it(tmp_path, capsys):
    train = tmp_path / "train.tar"
    with tarfile.open(train, "w") as outer:
        _add(outer, "n01.tar", _class_tar(2))
        _add(outer, "n02.tar", _class_tar(0))
    assert cli("prepare", train, tmp_path / "out", "--size", "32", "--no-progress") == 2
    one_line(capsys, "train.tar:n02.tar", "empty class tar")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
