"""What runs a tower's forward inside ``Embedder.encode``: torch, or an ONNX Runtime export.

The same fp32 weights can run faster on CPU through ONNX Runtime, with vectors within 1e-5 of
torch's: 1.6-2x on one pinned core beside a busy one (MiniLM, ViT-B-32), but not at the
default threads of a quiet 2-core machine, where torch was as fast or faster
(docs/benchmarks.md); "auto" therefore measures which (``encoders.speed``). A tower exports itself once per
digest under ``$MMEMBED_HOME/onnx`` and holds a ``RuntimeChoice``, which decides per
``encode`` whether the export may run:

- "auto" (default): when the tower is in eval mode, on CPU, in fp32, its weights have not
  changed in place since it was exported (a model being trained keeps torch instead of writing
  an export per step), and, for towers that give calibration runs, the export measured faster
  than torch on this machine (``encoders.speed``, cached); torch otherwise, silently;
- "onnx": the same, but each fallback to torch is warned about once;
- "torch": always torch;
- "onnx-int8", "openvino", "openvino-int8" (towers that take ``RUNTIMES``): the export run by
  another engine (``encoders.engines``): ONNX Runtime on a dynamic int8 copy, OpenVINO on the
  fp32 graph, OpenVINO on a static int8 copy. Each is checked against the fp32 graph when it is
  opened (mean cosine >= 0.99 on the tower's check inputs); a missing package or a failed
  check raises ``RuntimeUnavailable``, one line naming the runtime and the fix, never a silent
  fp32. Training, GPU and bf16 still run torch (with one warning).

An fp32 export that fails (no ``onnxruntime``, disk full) warns once and leaves torch. Gradients
never see the export: only ``Embedder.encode`` enters a tower's ``inference()`` block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .digest import tower_digest, weights_key
from .engines import RuntimeUnavailable
from .speed import choose

logger = logging.getLogger(__name__)

FP32_RUNTIMES = ("auto", "onnx", "torch")  # what every exporting tower takes
RUNTIMES = (*FP32_RUNTIMES, "onnx-int8", "openvino", "openvino-int8")  # text and open_clip towers


class RuntimeChoice:
    """A tower's runtime setting and its ONNX Runtime session (one per weights)."""

    def __init__(self, owner: str, runtime: str, runtimes: tuple[str, ...] = FP32_RUNTIMES):
        self.owner = owner  # names the tower in warnings
        self.runtimes = runtimes  # the settings this tower takes
        self._session: tuple[tuple, Any] | None = None  # (weights_key, what open_export gave)
        self.runtime = ""
        self.set(runtime)

    def set(self, runtime: str) -> None:
        if runtime not in self.runtimes:
            raise ValueError(
                f"{self.owner}: runtime must be one of {self.runtimes}, got {runtime!r}"
            )
        if runtime != self.runtime:
            self._session = None  # another engine: opened (and checked) again on next use
        self.runtime = runtime
        self._warned, self._failed = False, None  # one warning and one export try per setting

    @property
    def engine(self) -> str:
        """The engine of ``encoders.engines`` this setting runs ("onnx" for auto and onnx)."""
        return "onnx" if self.runtime in FP32_RUNTIMES else self.runtime

    def session(
        self,
        module: nn.Module,
        open_export: Callable[[str], Any],
        race: Callable[[Any], dict[str, Callable[[], object]]] | None = None,
    ) -> Any | None:
        """``open_export(digest)``'s session for ``module``'s current weights, or None (torch).

        ``race(session)`` gives engine -> one pass of the tower's calibration batches on it
        ("onnx", "torch"); under "auto" the faster one runs (``encoders.speed.choose``).
        """
        if self.runtime == "torch":
            return None
        params = list(module.parameters())
        if module.training or any(
            p.device.type != "cpu" or p.dtype != torch.float32 for p in params
        ):
            return self._fallback("the ONNX runtime runs fp32 on CPU only", quiet=True)
        key = weights_key(module)
        if self._session is not None and self._session[0] == key:
            return self._session[1]
        if self._failed == key:
            return None  # this export failed already (and said so): not again at every call
        if self._session is not None and self.runtime == "auto":
            return self._fallback("the weights changed since the export", quiet=True)
        digest = tower_digest(module)
        try:
            session = open_export(digest)
        except RuntimeUnavailable:
            raise  # an engine the user asked for by name: never a silent fp32
        except Exception as error:  # onnxruntime / onnx missing, export failed, disk full
            if self.runtime not in FP32_RUNTIMES:
                raise RuntimeUnavailable(
                    self.runtime,
                    f"no ONNX export ({type(error).__name__}: {error})",
                    "use runtime='auto' (fp32, falls back to torch)",
                ) from error
            self._failed = key
            return self._fallback(f"no ONNX export ({type(error).__name__}: {error})")
        if self.runtime == "auto" and race is not None:
            if choose(digest, torch.get_num_threads(), race(session)) == "torch":
                session = None  # measured slower here: torch runs, same vectors
        self._session = (key, session)
        return session

    def _fallback(self, reason: str, quiet: bool = False) -> None:
        if quiet and self.runtime == "auto":
            return None
        if not self._warned:
            logger.warning(
                "%s: runtime %r falls back to torch: %s", self.owner, self.runtime, reason
            )
            self._warned = True
        return None

    def __getstate__(self) -> dict:
        """Copies and pickles leave the session behind (it is opened again on next use)."""
        return {**self.__dict__, "_session": None, "_failed": None}
