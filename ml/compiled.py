"""The champion compiled to native code (lleaves: LightGBM model → LLVM → machine code).

Push time: ``compile_forest(model_text)`` turns the LightGBM text model into an object file for
this machine's CPU, and ``check_rows(booster)`` makes the rows that prove it scores like the
text model: every split threshold of every tree, just below and at it, and missing values.
Serving time: ``CompiledForest.load`` refuses an object built for another target (its code may
use instructions this CPU lacks: loading it would crash, not fail), and the scorer compares it
with the text model on the check rows before serving it. Why lleaves and not Treelite/TL2cgen:
ml/README.md, "Serving".
"""

from __future__ import annotations

import ctypes
import hashlib
import tempfile
from collections.abc import Mapping
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from ml.errors import CorruptArtifact

CHECK_ROWS = 2000
# Trees compiled into each cache block (lleaves' default is 34): 8 scored the 446-tree
# champion's 10,000-row batches 1.3-1.8x faster on the shared 2-core machine, one row alike
# (benchmarks/measured/ctr-compiled-blocksize-2026-12-02.md).
BLOCK_TREES = 8
TOLERANCE = 1e-6  # probabilities of the compiled and the text model may differ by this much


def host_target() -> dict[str, str]:
    """What a compiled object is built for: it runs only where all of this is the same."""
    import llvmlite.binding as llvm

    llvm.initialize()
    llvm.initialize_native_target()
    return {
        "triple": llvm.get_process_triple(),
        "cpu": llvm.get_host_cpu_name(),
        "cpu_features_sha256": hashlib.sha256(
            llvm.get_host_cpu_features().flatten().encode()
        ).hexdigest(),
        "compiler": f"lleaves {package_version('lleaves')}",
    }


def compile_forest(model_text: bytes) -> bytes:
    """The object file of a LightGBM text model, built for this machine."""
    import lleaves

    with tempfile.TemporaryDirectory(prefix="ctr-compile-") as scratch:
        model_file, object_file = Path(scratch) / "model.txt", Path(scratch) / "model.o"
        model_file.write_bytes(model_text)
        lleaves.Model(model_file=str(model_file)).compile(
            cache=str(object_file), fblocksize=BLOCK_TREES
        )
        return object_file.read_bytes()


def check_rows(booster: lgb.Booster, rows: int = CHECK_ROWS) -> np.ndarray:
    """Rows that exercise every split: each feature takes, at random (seeded), one of its split
    thresholds, the next number above one, or missing."""
    values: list[set[float]] = [{0.0} for _ in range(booster.num_feature())]

    def visit(node: Mapping[str, Any]) -> None:
        if "split_feature" not in node:
            return
        thresholds = str(node["threshold"]).split("||")  # "a||b" for categorical splits
        values[node["split_feature"]].update(float(t) for t in thresholds)
        visit(node["left_child"])
        visit(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        visit(tree["tree_structure"])
    rng = np.random.default_rng(0)
    matrix = np.empty((rows, len(values)))
    for j, points in enumerate(values):
        at = np.array(sorted(points))
        candidates = np.concatenate([at, np.nextafter(at, np.inf), [np.nan]])
        matrix[:, j] = rng.choice(candidates, rows)
    return matrix


_ENTRY = ctypes.CFUNCTYPE(
    None,
    ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double),
    ctypes.c_int32,
    ctypes.c_int32,
)


class CompiledForest:
    """A loaded object file: ``entry(rows, out, start, end)`` scores rows ``start..end`` of a
    row-major float64 matrix into ``out``, without the GIL."""

    def __init__(self, model: Any) -> None:
        self._model = model  # owns the machine code: keep it alive as long as ``entry``
        self.entry = _ENTRY(model._execution_engine.get_function_address("forest_root"))

    @classmethod
    def load(
        cls, model_text: bytes, object_code: bytes, target: Mapping[str, str]
    ) -> CompiledForest:
        import lleaves

        here = host_target()
        if dict(target) != here:
            differences = ", ".join(
                f"{key} {target.get(key)!r} (here {value!r})"
                for key, value in here.items()
                if target.get(key) != value
            )
            raise CorruptArtifact(
                f"the compiled model was built for another machine: {differences}"
            )
        with tempfile.TemporaryDirectory(prefix="ctr-compiled-") as scratch:
            model_file, object_file = Path(scratch) / "model.txt", Path(scratch) / "model.o"
            model_file.write_bytes(model_text)
            object_file.write_bytes(object_code)
            model = lleaves.Model(model_file=str(model_file))
            model.compile(cache=str(object_file))  # loads the object: the file exists
        return cls(model)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        matrix = np.ascontiguousarray(matrix, dtype=np.float64)
        out = np.empty(len(matrix))
        self.entry(
            matrix.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            0,
            len(matrix),
        )
        return out
