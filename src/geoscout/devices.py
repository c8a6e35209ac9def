"""Where the networks run: ``--device cpu|cuda|cuda:N|auto`` and the backbone's ``--precision``.

``auto`` picks the first CUDA GPU torch can see, else the CPU. On a GPU the backbone runs under
``torch.autocast`` in bfloat16 (GPUs that support it) or float16 (``precision="auto"``); on the CPU it runs in
float32. Embeddings always come back as float32 and L2-normalised, so stores and bundles do not depend on it
(the backbone fingerprint does not include fp16/bf16: they agree with fp32 to cosine > 0.99). ``int8`` (opt-in, CPU,
ONNX Runtime, the ``geoclip`` backbone) runs the tower with int8 weights and dynamically quantised activations: it
is a different numeric path, so it is part of the fingerprint (its embeddings never mix with fp32 ones).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .errors import InvalidInput

__all__ = ["DEVICES", "PRECISIONS", "autocast", "cuda_available", "resolve_device", "resolve_precision"]

DEVICES = ("cpu", "cuda", "auto")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")


def cuda_available() -> bool:
    """True when torch sees at least one CUDA GPU."""
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str | None) -> str:
    """``"auto"`` -> ``"cuda"`` or ``"cpu"``; checks that a requested GPU exists (clear error if not)."""
    d = (device or "cpu").strip().lower()
    if d == "cpu":
        return "cpu"
    if d == "auto":
        return "cuda" if cuda_available() else "cpu"
    if d == "cuda" or d.startswith("cuda:"):
        import torch

        if not torch.cuda.is_available():
            build = "a CPU-only build of torch" if torch.version.cuda is None else "no usable CUDA driver/GPU"
            raise InvalidInput(
                f"device {device!r}: torch sees no CUDA GPU ({build}); use --device cpu, or --device auto to use a "
                "GPU only when there is one (install a CUDA build of torch from pytorch.org for GPUs)"
            )
        if d.startswith("cuda:"):
            idx = d.split(":", 1)[1]
            n = torch.cuda.device_count()
            if not idx.isdigit() or int(idx) >= n:
                raise InvalidInput(f"device {device!r}: this machine has {n} CUDA GPU(s): cuda:0 .. cuda:{n - 1}")
        return d
    raise InvalidInput(f"device {device!r}: expected cpu, cuda, cuda:N or auto")


def resolve_precision(precision: str | None, device: str) -> str:
    """``"auto"`` -> ``"bf16"`` (GPUs with bfloat16) / ``"fp16"`` (other GPUs) / ``"fp32"`` (CPU); checks the value
    (``int8`` is for the CPU only)."""
    p = (precision or "auto").strip().lower()
    if p not in PRECISIONS:
        raise InvalidInput(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    on_gpu = device.startswith("cuda")
    if p == "auto":
        if not on_gpu:
            return "fp32"
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if p in ("fp16", "bf16") and not on_gpu:
        raise InvalidInput(f"precision {p}: mixed precision is for GPUs here; use fp32 (or auto) on the CPU")
    if p == "int8" and on_gpu:
        raise InvalidInput("precision int8 runs on the CPU (ONNX Runtime); use --device cpu, or fp16/bf16 on a GPU")
    return p


@contextlib.contextmanager
def autocast(device: str, precision: str) -> Iterator[None]:
    """``torch.autocast`` for fp16/bf16 on a GPU; nothing for fp32."""
    if precision == "fp32" or not device.startswith("cuda"):
        yield
        return
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type="cuda", dtype=dtype):
        yield
