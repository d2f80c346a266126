"""What runs an exported fp32 graph: ONNX Runtime as it is, ONNX Runtime on a dynamic int8 copy,
or OpenVINO on the fp32 graph or on a static int8 copy made by OpenVINO's own quantiser (NNCF).
No torch here: search queries open these without importing it.

Every engine has ONNX Runtime's call shape, ``run(output_names, feeds) -> [array, ...]``, so a
tower runs any of them the same way. The int8 copies are made once per fp32 export, beside it
(``<export>-int8``, ``<export>-ov-int8``), sealed like it (``hub.verified``), and every time one is
opened its outputs are compared with the fp32 graph's on the tower's fixed check inputs: a mean
cosine below ``MIN_COSINE`` refuses it with one line naming the runtime.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..hub import verified
from ..hub.atomic import staged_folder

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
ENGINES = ("onnx", "onnx-int8", "openvino", "openvino-int8")  # every runtime an export can run
QUANTISED = {"onnx-int8": "int8", "openvino-int8": "ov-int8"}  # runtime -> suffix of its copy
COPY_FILES = {  # runtime -> the files of its copy, the graph first
    "onnx-int8": (MODEL_FILE,),
    "openvino-int8": ("model.xml", "model.bin"),  # OpenVINO's IR
}
MIN_COSINE = 0.99  # mean cosine to the fp32 graph a quantised or OpenVINO engine must keep
VARIANT_CONFIG = "variant.json"
VARIANT_VERSION = 2  # bump when the way int8 copies are made changes (2: NNCF for OpenVINO)
FIX = {
    "openvino": "pip install 'mmembed[openvino]'",
    "openvino-int8": "pip install 'mmembed[openvino]'",  # openvino and nncf
    "onnx-int8": "pip install onnxruntime onnx",
}


class RuntimeUnavailable(RuntimeError):
    """A runtime the user asked for cannot run this tower; the message names it and the fix."""

    def __init__(self, runtime: str, reason: str, fix: str):
        self.runtime = runtime
        super().__init__(f"runtime {runtime!r}: {reason}; {fix}")


def ort_session(model_file: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session of ``model_file`` on ``threads`` intra-op threads.

    Idle worker threads do not spin waiting for the next call: spinning steals the CPU from
    concurrent requests (28 ms -> 15 ms per query on a busy 2-core machine). What spinning and
    the other session options give on a quiet machine is measured by
    ``python -m benchmarks.profile_cpu`` (docs/benchmarks.md).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # the graph runs sequentially; one pool is enough
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(model_file), options, providers=["CPUExecutionProvider"]
    )


FUSED = "fused"  # suffix of the fp32 copy with ONNX Runtime's transformer fusions
FUSED_ATOL = 1e-5  # largest difference (unit rows) to the torch tower the copy may show
# transformers model_type -> onnxruntime.transformers model type, for the towers whose "onnx"
# runtime opens a fused copy. Empty: on the one (busy) profile run the fused MiniLM graph ran
# at x0.60 of the plain one (benchmarks/results/profile_cpu.json); add "bert": "bert" once a
# quiet run shows a gain.
FUSIONS: dict[str, str] = {}


def fused_folder(
    fp32_folder: Path,
    check: Sequence[dict[str, np.ndarray]],
    expected: Callable[[], Sequence[np.ndarray]],
    fusion: dict[str, Any],
) -> Path:
    """The folder whose ``model.onnx`` mmembed's fp32 "onnx" runtime opens: the graph with
    ``onnxruntime.transformers``' fusions (attention, embedding layer norm, skip layer norm,
    bias GELU) when it can be made and matches torch, else the plain export.

    The session's own graph optimisations do not fuse a traced BERT's attention; the offline
    optimiser does (``python -m benchmarks.profile_cpu``: the "fused graph" row against the
    plain session). The copy is made once beside the export (``<export>-fused``, sealed), after
    its outputs on ``check`` matched the torch tower's (``expected()``) within ``FUSED_ATOL``; a
    copy that cannot be made or differs is warned about and the plain graph runs.
    """
    try:
        return fused_copy(fp32_folder, fusion, check, expected) or fp32_folder
    except Exception as error:  # an optimiser that fails on this graph: the plain graph runs
        logger.warning(
            "%s: no fused copy (%s: %s); plain fp32", fp32_folder, type(error).__name__, error
        )
        return fp32_folder


def fused_copy(
    fp32_folder: Path,
    fusion: dict[str, Any],
    check: Sequence[dict[str, np.ndarray]],
    expected: Callable[[], Sequence[np.ndarray]],
) -> Path | None:
    """The fused copy of ``fp32_folder``'s graph, made and checked once; None when its outputs
    on ``check`` differ from ``expected`` (torch's) by more than ``FUSED_ATOL`` (warned about).

    ``fusion`` is ``onnxruntime.transformers.optimizer.optimize_model``'s model description:
    ``model_type``, ``num_heads``, ``hidden_size``.
    """
    import onnxruntime

    folder = fp32_folder.with_name(f"{fp32_folder.name}-{FUSED}")
    source = verified.file_checksum(fp32_folder / MODEL_FILE)
    record = {
        "runtime": "onnx",
        "fusion": fusion,
        "source": source,
        "onnxruntime": onnxruntime.__version__,
        "version": VARIANT_VERSION,
    }
    if verified.intact_folder(folder, (VARIANT_CONFIG, MODEL_FILE)):
        try:
            found = json.loads((folder / VARIANT_CONFIG).read_text())
            if {k: found.get(k) for k in record} == record:
                return folder if found.get("max_abs_diff", 1.0) <= FUSED_ATOL else None
        except (OSError, ValueError):
            pass
    from onnxruntime.transformers import optimizer

    with staged_folder(folder) as staging:
        fused = optimizer.optimize_model(str(fp32_folder / MODEL_FILE), **fusion)
        fused.save_model_to_file(str(staging / MODEL_FILE))
        session = ort_session(staging / MODEL_FILE, 1)
        diff = max(
            float(np.abs(session.run(["embedding"], feed)[0] - want).max())
            for feed, want in zip(check, expected(), strict=True)
        )
        (staging / VARIANT_CONFIG).write_text(json.dumps({**record, "max_abs_diff": diff}) + "\n")
        verified.publish_folder(staging)
    if not diff <= FUSED_ATOL:
        logger.warning(
            "%s: the fused graph differs from torch by %.2e (> %.0e); plain fp32",
            fp32_folder,
            diff,
            FUSED_ATOL,
        )
        return None
    return folder


class OpenVinoSession:
    """An OpenVINO CPU compiled model behind ONNX Runtime's ``run(names, feeds)``.

    OpenVINO's own defaults are kept, as a user of OpenVINO gets them: on CPUs with bf16
    instructions (AVX512-BF16, AMX) it runs an fp32 graph in bf16 (MiniLM on this machine: max
    abs diff 8.7e-4, cosine > 0.9999 to fp32; ``tests/test_runtimes.py``).
    """

    def __init__(self, model_file: Path, threads: int):
        import openvino

        core = openvino.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        self.model = core.compile_model(str(model_file), "CPU", config)
        self.outputs = {port.get_any_name(): port for port in self.model.outputs}

    def run(self, names: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = self.model.create_infer_request()  # one per call: safe from several threads
        results = request.infer(feeds)
        if names is None:
            return [results[port] for port in self.model.outputs]
        return [np.asarray(results[self.outputs[name]]) for name in names]


def open_engine(
    fp32_folder: Path,
    runtime: str,
    threads: int,
    check: Sequence[dict[str, np.ndarray]],
    calibration: Sequence[dict[str, np.ndarray]] = (),
    output: str = "embedding",
) -> Any:
    """An engine of ``runtime`` for the fp32 export in ``fp32_folder``; checked unless fp32 ORT.

    Args:
        fp32_folder: an export made by ``onnx_export.export_checked``.
        runtime: one of ``ENGINES``.
        threads: intra-op threads.
        check: feeds whose outputs must keep mean cosine >= MIN_COSINE to the fp32 graph's.
        calibration: feeds the static int8 copy takes its activation ranges from (openvino-int8).

    Raises:
        RuntimeUnavailable: the runtime's package is missing, or its copy fails the check.
    """
    if runtime not in ENGINES:
        raise ValueError(f"runtime must be one of {ENGINES}, got {runtime!r}")
    fp32 = ort_session(fp32_folder / MODEL_FILE, threads)
    if runtime == "onnx":
        return fp32
    if runtime.startswith("openvino"):
        try:
            import openvino  # noqa: F401
        except ImportError:
            raise RuntimeUnavailable(
                runtime, "the openvino package is not installed", FIX[runtime]
            ) from None
    model_file = fp32_folder / MODEL_FILE
    if runtime in QUANTISED:
        model_file = quantised_copy(fp32_folder, runtime, calibration) / COPY_FILES[runtime][0]
    if runtime.startswith("openvino"):
        engine: Any = OpenVinoSession(model_file, threads)
    else:
        engine = ort_session(model_file, threads)
    kept = mean_cosine(fp32, engine, check, output)
    if not kept >= MIN_COSINE:
        raise RuntimeUnavailable(
            runtime,
            f"its outputs keep mean cosine {kept:.4f} to fp32 (< {MIN_COSINE}) on the check set",
            "use runtime='onnx' (fp32) for this model",
        )
    logger.info("runtime %r: mean cosine %.5f to fp32 on the check set", runtime, kept)
    return engine


def mean_cosine(
    reference: Any, engine: Any, feeds: Sequence[dict[str, np.ndarray]], output: str = "embedding"
) -> float:
    """Mean cosine between the rows two engines give on ``feeds``."""
    cosines = []
    for feed in feeds:
        want = reference.run([output], feed)[0].astype(np.float64)
        got = engine.run([output], feed)[0].astype(np.float64)
        want /= np.maximum(np.linalg.norm(want, axis=-1, keepdims=True), 1e-12)
        got /= np.maximum(np.linalg.norm(got, axis=-1, keepdims=True), 1e-12)
        cosines.append((want * got).sum(axis=-1))
    return float(np.concatenate(cosines).mean())


def quantised_copy(
    fp32_folder: Path, runtime: str, calibration: Sequence[dict[str, np.ndarray]] = ()
) -> Path:
    """The int8 copy of ``fp32_folder``'s graph for ``runtime``, made once beside it.

    "onnx-int8": ONNX Runtime's dynamic quantiser (int8 weights per channel, activations
    quantised per call), what sentence-transformers' ``export_dynamic_quantized_onnx_model``
    does. "openvino-int8": NNCF's post-training quantisation of the OpenVINO model on
    ``calibration`` (transformer preset: SmoothQuant, fast bias correction), what
    sentence-transformers' ``export_static_quantized_openvino_model`` runs through
    optimum-intel.
    """
    folder = fp32_folder.with_name(f"{fp32_folder.name}-{QUANTISED[runtime]}")
    source = verified.file_checksum(fp32_folder / MODEL_FILE)
    record = {"runtime": runtime, "source": source, "version": VARIANT_VERSION}
    if verified.intact_folder(folder, (VARIANT_CONFIG, *COPY_FILES[runtime])):
        try:
            if json.loads((folder / VARIANT_CONFIG).read_text()) == record:
                return folder
        except (OSError, ValueError):
            pass
    with staged_folder(folder) as staging:
        if runtime == "onnx-int8":
            _dynamic_int8(fp32_folder / MODEL_FILE, staging / MODEL_FILE)
        else:
            if not calibration:
                raise RuntimeUnavailable(runtime, "no calibration inputs", "use runtime='openvino'")
            _nncf_int8(fp32_folder / MODEL_FILE, staging / COPY_FILES[runtime][0], calibration)
        (staging / VARIANT_CONFIG).write_text(json.dumps(record) + "\n")
        verified.publish_folder(staging)
    return folder


def _dynamic_int8(source: Path, target: Path) -> None:
    try:
        from onnxruntime import quantization
    except ImportError as error:
        raise RuntimeUnavailable("onnx-int8", f"no quantiser ({error})", FIX["onnx-int8"]) from None
    quantization.quantize_dynamic(
        source, target, weight_type=quantization.QuantType.QInt8, per_channel=True
    )


def _nncf_int8(source: Path, target: Path, calibration: Sequence[dict[str, np.ndarray]]) -> None:
    """Quantise ``source`` (ONNX) with NNCF on the rows of ``calibration``; save it as IR."""
    try:
        import nncf
    except ImportError:
        raise RuntimeUnavailable(
            "openvino-int8", "the nncf package is not installed", FIX["openvino-int8"]
        ) from None
    import openvino

    samples = [  # one sample per row, as the calibration datasets of optimum-intel are
        {name: array[row : row + 1] for name, array in feed.items()}
        for feed in calibration
        for row in range(len(next(iter(feed.values()))))
    ]
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(sys.stderr):  # its progress bars: never into piped output
        model = nncf.quantize(
            openvino.Core().read_model(str(source)),
            nncf.Dataset(samples),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(samples),
            ignored_scope=nncf.IgnoredScope(names=_kept_fp32(source), validate=False),
        )
    openvino.save_model(model, str(target), compress_to_fp16=False)  # the rest stays fp32


def _kept_fp32(model_file: Path) -> list[str]:
    """MatMul nodes the static int8 copy leaves in fp32 (NNCF's ignored scope).

    Products of two activations (attention's Q.K and A.V) have no weight to shrink, and the
    MLP's second layer reads GELU outputs whose few large values a per-tensor int8 scale
    flattens. On MiniLM, NNCF's transformer preset on all MatMuls kept cosine 0.951 to fp32 on
    the one-word text "short" (0.993 on the check set); leaving these 18 out kept 0.992 (0.997),
    and ran as fast (docs/benchmarks.md).
    """
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    weights |= {n.output[0] for n in graph.node if n.op_type == "Constant"}
    producer = {out: node for node in graph.node for out in node.output}

    def after_gelu(name: str, depth: int = 3) -> bool:
        node = producer.get(name)
        if node is None:
            return False
        if node.op_type in ("Gelu", "FastGelu", "Erf", "Tanh"):
            return True
        return (
            depth > 0
            and node.op_type in ("Mul", "Add", "Div")
            and any(after_gelu(parent, depth - 1) for parent in node.input)
        )

    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and (not any(i in weights for i in node.input) or after_gelu(node.input[0]))
    ]
