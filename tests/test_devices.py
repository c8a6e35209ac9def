"""--device / --precision on any machine: resolution, clear errors for a GPU that is not there, CLI checks.
(The GPU itself is exercised in tests/test_gpu.py, which skips without CUDA.)"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from geoscout.cli import app
from geoscout.devices import autocast, cuda_available, resolve_device, resolve_precision
from geoscout.errors import InvalidInput

NO_GPU = pytest.mark.skipif(cuda_available(), reason="checks the errors of a machine without a CUDA GPU")


def test_resolve_device():
    assert resolve_device("cpu") == "cpu" and resolve_device(None) == "cpu"
    assert resolve_device("auto") == ("cuda" if cuda_available() else "cpu")
    assert resolve_device("AUTO") == resolve_device("auto")
    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(InvalidInput, match="cpu, cuda, cuda:N or auto|CUDA GPU"):
            resolve_device(bad)


@NO_GPU
def test_cuda_without_a_gpu_says_what_to_do():
    with pytest.raises(InvalidInput, match="torch sees no CUDA GPU.*--device cpu"):
        resolve_device("cuda")
    with pytest.raises(InvalidInput, match="no CUDA GPU"):
        resolve_device("cuda:0")


def test_resolve_precision():
    assert resolve_precision("auto", "cpu") == "fp32" and resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(InvalidInput, match="GPUs"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(InvalidInput, match="auto, fp32, fp16, bf16, int8"):
        resolve_precision("int4", "cpu")
    assert resolve_precision("int8", "cpu") == "int8"


def test_create_backbone_auto_and_cpu_autocast_is_fp32():
    import numpy as np

    from geoscout.backbones import create_backbone

    bb = create_backbone("effnet-lite0", device="auto")
    assert bb.device == ("cuda" if cuda_available() else "cpu")
    if bb.device == "cpu":
        assert bb.precision == "fp32" and "precision='fp32'" in repr(bb)
    with autocast("cpu", "fp32"):
        x = np.zeros((1, 3, bb.input_size, bb.input_size), np.float32)
        assert bb.forward_features(x).dtype == np.float32


@NO_GPU
@pytest.mark.parametrize(
    "args",
    [
        ["embed", "DS", "--device", "cuda"],
        ["train", "DS", "-o", "B", "--device", "cuda"],
        ["locate", "photo.jpg", "--device", "cuda"],
        ["serve", "--device", "cuda"],
    ],
)
def test_cli_device_cuda_without_a_gpu(args):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "no CUDA GPU" in res.output


def test_cli_device_option_checks():
    res = CliRunner().invoke(app, ["embed", "DS", "--ray-gpus", "1"])
    assert res.exit_code == 2 and "--ray" in res.output
    res = CliRunner().invoke(app, ["train", "DS", "-o", "B", "--device", "cpu", "--precision", "fp16"])
    assert res.exit_code == 2 and "fp32" in res.output
