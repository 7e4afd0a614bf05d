"""The errors a user sees: one line on stderr ("fusegen: error: ..."), exit 1.

Every error that is the user's to fix (a file, a model, a cell, an argument) is a UserError;
the CLI catches only these (and a missing file). Anything else is a bug in fusegen and keeps its
traceback. Each stage raises its own subclass, defined where the stage lives, so a caller can
also catch one stage: frontend (ModelError, UnsupportedOpError, TraceError), compare
(DataError, SpecError).
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message is one actionable line."""


class FrontendError(UserError, ValueError):
    """The model, file or cell cannot be read or traced (frontend/)."""


class CompareError(UserError, ValueError):
    """A `fusegen compare` data set or cell specification that cannot be used (compare/)."""


class FileFormatError(UserError, ValueError):
    """A .tflite (or one of its fused ops) that fusegen cannot or must not run: not a
    flatbuffer, truncated, or a fused op whose inputs, outputs, buffers or options do not match
    what its kernel expects (fusegen/converter/validate.py)."""
