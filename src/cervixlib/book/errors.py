"""The book's one exception type, in a module of its own so that every part raises the same class.

:class:`BookError` is what ``cervix book`` catches and prints as one line: a bad
manifest or table of contents, a failing notebook cell, a failed site build.
"""

from __future__ import annotations

__all__ = ["BookError"]


class BookError(RuntimeError):
    """A notebook, the manifest or the site build failed; the message is one line."""
