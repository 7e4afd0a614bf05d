"""The cell IR: symbolic widths, a closed op set, a frozen graph and its verifier."""

from fusegen.ir.dims import Dim
from fusegen.ir.graph import Graph, Node, Param, Weights
from fusegen.ir.ops import BINARY, ELEMENTWISE, LEAVES, UNARY, Op
from fusegen.ir.verify import IRError, verify

__all__ = ["BINARY", "ELEMENTWISE", "LEAVES", "UNARY", "Dim", "Graph", "IRError", "Node", "Op",
           "Param", "Weights", "verify"]
