"""The pass pipeline: plain functions called in order, the IR verified after each.

`run_pipeline(bound, dump=...)` is the only entry point; `dump` receives each pass's name and
output so `fusegen build --dump-ir` can show every stage.
"""

from __future__ import annotations

from collections.abc import Callable

from fusegen.ir import verify
from fusegen.ir.bound import BoundGraph
from fusegen.passes.canonicalize import canonicalize
from fusegen.passes.matmul import (fuse_matmul_sums, hoist_input_projection,
                                   merge_shared_matmuls, split_concat_matmuls)

Pass = Callable[[BoundGraph], BoundGraph]

PIPELINE: tuple[Pass, ...] = (
    canonicalize,
    split_concat_matmuls,
    merge_shared_matmuls,
    canonicalize,
    fuse_matmul_sums,
    hoist_input_projection,
)


def run_pipeline(bound: BoundGraph,
                 dump: Callable[[str, BoundGraph], None] | None = None) -> BoundGraph:
    verify(bound.graph)
    for index, fn in enumerate(PIPELINE):
        bound = fn(bound)
        verify(bound.graph)
        if dump is not None:
            dump(f"{index + 1:02d}_{fn.__name__}", bound)
    return bound
