"""The error types of the data layer.

Bad input (a missing class folder, a truncated image, a malformed ``.dat`` file) must
reach the user as a message that names the file and says what is wrong, never as a
deep PIL or torch traceback. Everything in :mod:`cervixlib.data` raises
:class:`DataError` for such input; the ``cervix`` command line prints it and exits
with status 2. When indexing finds several bad files it reports them all at once, in
one :class:`BadFilesError` (a DataError): a first line with their number, then one
``"<path>: <what is wrong>"`` line per file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DataError", "BadFilesError", "display_path"]


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as printable text: bytes that are not UTF-8 (legal in Linux file names)
    appear as ``\\xNN`` escapes instead of breaking ``print`` with a UnicodeEncodeError."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class DataError(ValueError):
    """Bad input data: ``"<path>: <what is wrong>"`` on one line.

    Args:
        path: the file or folder at fault.
        problem: what is wrong with it, in words a user can act on.

    Attributes:
        path: the offending path.
        problem: the problem alone, without the path (for reports that list many files).
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = _one_line(problem)  # one line, whatever the cause said
        super().__init__(f"{display_path(self.path)}: {self.problem}")

    def __reduce__(self):  # keep (path, problem) through pickling (DataLoader workers)
        return (type(self), (self.path, self.problem))


class BadFilesError(DataError):
    """Every problem found under one dataset root, reported together.

    ``str(exc)`` is ``"<root>: <problem>"`` (for example ``"3 bad files ..."``) followed
    by one ``"  <path>: <what is wrong>"`` line per entry of ``problems``, so that a user
    fixes them all in one pass instead of one per run. With a single problem it is the
    one line of a plain DataError naming that file (``path`` is then the file).

    Attributes:
        path: the dataset root (the file itself when there is one problem).
        problem: the first line, without the path.
        problems: ``(path, what is wrong)`` of each bad file or folder, in the order found.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str,
                 problems: Iterable[tuple[str | os.PathLike[str], str]]) -> None:
        super().__init__(path, problem)
        self.problems: tuple[tuple[Path, str], ...] = tuple((Path(p), _one_line(w)) for p, w in problems)
        if len(self.problems) > 1:
            lines = [f"  {display_path(p)}: {w}" for p, w in self.problems]
            self.args = ("\n".join([self.args[0], *lines]),)

    def __reduce__(self):
        return (type(self), (self.path, self.problem, self.problems))
