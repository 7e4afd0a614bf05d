"""The frontend's error, importable without Keras (`fusegen bench` reads files with no
TensorFlow and raises it too)."""

from __future__ import annotations

from fusegen.errors import FrontendError


class ModelError(FrontendError):
    """A model or file fusegen cannot handle; the message is one actionable line."""
