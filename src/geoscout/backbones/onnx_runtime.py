"""Export a backbone's torch module to ONNX (cached by fingerprint) and run it with ONNX Runtime."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Protocol

from geoscout._io import cpu_threads, safe_name
from geoscout.errors import GeoscoutError, MissingDependency


class Backbone(Protocol):
    """What export needs of a backbone (:class:`geoscout.backbones.Backbone` has it)."""

    name: str
    device: str
    precision: str

    @property
    def module(self) -> Any: ...

    @property
    def input_size(self) -> int: ...

    def fingerprint(self) -> dict[str, Any]: ...

    def fingerprint_hash(self) -> str: ...


__all__ = ["INT8_SCHEME", "export_onnx", "onnx_path", "onnx_session", "quantize_int8"]

#: The int8 numeric path (part of the fingerprint of an int8 backbone; change it when the recipe changes):
#: ONNX Runtime's dynamic quantisation of the MatMuls with a constant weight inside the transformer encoder (its
#: attention projections and MLPs: ~97 % of a ViT's multiply-adds), weights int8 per output channel, activations
#: uint8 with a per-tensor scale computed on each call. The attention products (two activations), LayerNorms,
#: softmax, the patch convolution and everything after the encoder (projection, GeoCLIP's MLP) stay fp32.
INT8_SCHEME = "ort-dynamic-int8-encoder-matmuls-per-channel-v1"


def onnx_path(backbone: Backbone, *, precision: str | None = None) -> Path:
    """Where the model lives: ``cache_dir("onnx")/<name>-<fingerprint hash>.onnx``. The fp32 export is keyed by
    the fp32 fingerprint; the int8 model (``precision="int8"``, default: the backbone's) by the int8 one."""
    from geoscout._io import cache_dir, json_digest

    fp = dict(backbone.fingerprint())
    if (precision or backbone.precision) != "int8":
        fp.pop("quantization", None)
    else:
        fp["quantization"] = INT8_SCHEME
    return cache_dir("onnx") / f"{safe_name(backbone.name)}-{json_digest(fp)}.onnx"


def quantize_int8(source: str | Path, target: str | Path) -> Path:
    """Write ``source`` (an fp32 ONNX model) quantised by :data:`INT8_SCHEME` to ``target`` atomically (kept when
    it exists). About 4x smaller; measured on ViT-L/14 on 2 CPU cores: ~1.6x less CPU time per forward pass."""
    target = Path(target)
    if target.is_file():
        return target
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from geoscout._io import atomic_path

    graph = onnx.load(str(source), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    nodes = [n.name for n in graph.node if n.op_type == "MatMul" and "/encoder/" in n.name and n.input[1] in weights]
    if not nodes:
        raise GeoscoutError(f"{source}: no transformer-encoder MatMul to quantise to int8; use precision fp32")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint on the root logger
    try:
        with atomic_path(target) as tmp:
            quantize_dynamic(
                str(source),
                str(tmp),
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=nodes,
                per_channel=True,
                weight_type=QuantType.QInt8,
                extra_options={"MatMulConstBOnly": True},
            )
    except Exception as exc:
        raise GeoscoutError(f"{source}: int8 quantisation failed ({exc}); use precision fp32") from exc
    finally:
        root.setLevel(level)
    return target


def export_onnx(backbone: Backbone, path: str | Path | None = None) -> Path:
    """Export ``backbone.module`` in fp32 (input ``pixels`` (n,3,S,S), output ``features`` (n,dim)) atomically;
    returns the path."""
    target = Path(path) if path is not None else onnx_path(backbone, precision="fp32")
    if target.is_file() and path is None:
        return target  # cached: no torch import at all
    import torch

    from geoscout._io import atomic_path

    s = backbone.input_size
    dummy = torch.zeros(2, 3, s, s)
    module = backbone.module.cpu().eval()
    with atomic_path(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                (dummy,),
                str(tmp),
                input_names=["pixels"],
                output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                opset_version=17,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:
            raise GeoscoutError(f"{backbone.name}: ONNX export failed ({exc}); use runtime='torch'") from exc
    backbone.module.to(backbone.device)
    return target


def onnx_session(backbone: Backbone):
    """An ONNX Runtime CPU session for the backbone, exporting it first if needed (and quantising the export
    when ``backbone.precision`` is ``int8``).

    Uses all cores this process may use for intra-op parallelism and one inter-op thread
    (a CNN is a chain of ops; on a 2-core machine more threads only add contention), without spinning.
    The graph ONNX Runtime optimises on the first session is saved beside the export (keyed by the
    ONNX Runtime version and this CPU: its layout choices are hardware-specific) and later sessions
    load it without re-optimising (same outputs, ~0.15 s less of every cold start).
    """
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        raise MissingDependency("runtime='onnx' needs ONNX Runtime: pip install onnxruntime") from None
    path = export_onnx(backbone)
    if backbone.precision == "int8":
        path = quantize_int8(path, onnx_path(backbone, precision="int8"))
    optimized = path.with_name(f"{path.stem}.ort{safe_name(ort.__version__)}-{_cpu_tag()}.optimized.onnx")
    if optimized.is_file():
        try:
            return _session(ort, optimized, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        except Exception:  # a damaged copy: rebuild it from the export below
            optimized.unlink(missing_ok=True)
    from geoscout._io import atomic_path

    try:
        with atomic_path(optimized) as tmp:
            return _session(ort, path, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, save=tmp)
    except OSError:  # a read-only cache: optimise in memory every time
        return _session(ort, path, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)


def _session(ort: Any, path: Path, level: Any, save: Path | None = None) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cpu_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = level
    opts.log_severity_level = 3
    # no busy-waiting between ops: on a shared or oversubscribed CPU (the OCR's sessions, a server's concurrent
    # requests, other programs) spinning threads burn the cores the others need; measured on 2 shared cores,
    # two concurrent runs took 0.7 s without spinning vs 1.3-2.1 s with it
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if save is not None:
        opts.optimized_model_filepath = str(save)
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _cpu_tag() -> str:
    """A short hash of this machine's architecture and CPU feature flags."""
    import hashlib
    import platform

    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = next((line for line in fh if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = platform.processor()
    return hashlib.sha256(f"{platform.machine()} {flags}".encode()).hexdigest()[:12]
