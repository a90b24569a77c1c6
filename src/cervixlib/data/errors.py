"""The one error type of the data layer.

Bad input (a missing class folder, a truncated image, a malformed ``.dat`` file) must
reach the user as one line that names the file and says what is wrong, never as a deep
PIL or torch traceback. Everything in :mod:`cervixlib.data` raises :class:`DataError`
for such input; the ``cervix`` command line prints it and exits with status 2.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DataError"]


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
        self.problem = " ".join(str(problem).split())  # one line, whatever the cause said
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):  # keep (path, problem) through pickling (DataLoader workers)
        return (type(self), (self.path, self.problem))
