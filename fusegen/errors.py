"""The errors a user can act on. `fusegen.cli.main` prints any UserError as one line
("fusegen: error: ...") and exits 1; everything else is a bug in fusegen."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, files or environment, said in one line."""


class FileFormatError(UserError, ValueError):
    """A .tflite (or one of its fused ops) that fusegen cannot or must not run: not a
    flatbuffer, truncated, or a fused op whose inputs, outputs, buffers or options do not match
    what its kernel expects (fusegen/converter/validate.py)."""
