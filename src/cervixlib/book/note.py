"""A chapter that does not apply to the book's data, written as a page that says why.

Chapter 4 compares SIPaKMeD's multi-cell images with its isolated cells; a
class-per-folder set has one subset. ``book/manifest.yml`` lists the subsets such a
chapter needs (``subsets:``); on data without them ``cervix book`` writes this note in the
chapter's place instead of executing it (and the run plan trains nothing for it), so the
book stays complete and honest rather than failing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

from cervixlib.facts import SUBSET_WORDS
from cervixlib.layout import CLASS_FOLDERS, data_label

__all__ = ["write_note"]

def write_note(source: str | os.PathLike[str], out: str | os.PathLike[str], missing: Sequence[str],
               data: str | os.PathLike[str] | None, available: Sequence[str], *,
               metadata: Mapping[str, Any] | None = None) -> Path:
    """A chapter that cannot run on this data, as a page that says why: the chapter's title
    (the first heading of ``source``) and one paragraph naming the subsets it needs and the
    data's (``available``: :func:`cervixlib.layout.root_subsets` of ``data``, worked out once by
    the caller). No kernel runs; the page shows no code (a hidden parameters cell records how
    it was built, as in every chapter)."""
    src = nbformat.read(source, as_version=4)
    heading = next((line for c in src.cells if c.cell_type == "markdown"
                    for line in c.source.splitlines() if line.startswith("# ")), f"# {Path(source).stem}")
    name = "the embedded synthetic set" if data is None else data_label(
        Path(data).name, CLASS_FOLDERS if tuple(available) == ("images",) else "sipakmed")
    need = " and ".join(SUBSET_WORDS[s] for s in missing)
    has = " and ".join(SUBSET_WORDS[s] for s in available)
    text = (f"**Not applicable to this data.** This chapter needs SIPaKMeD's {need}: it compares models "
            f"trained on each. The book's data, {name}, has {has} only, one subset, so there is nothing "
            "to compare and the chapter was not run. Run the book on SIPaKMeD "
            "(`cervix book --data SIPAKMED_ROOT`) for it.")
    params = dict((metadata or {}).get("parameters", {}))
    # the parameters it was built with, hidden from the page as in every chapter (papermill's form)
    cell = nbformat.v4.new_code_cell("# Parameters (the chapter was not run: see the note)\n"
                                     + "".join(f"{k} = {v!r}\n" for k, v in params.items()),
                                     metadata={"tags": ["parameters", "remove-cell"]})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(heading), cell,
                                         nbformat.v4.new_markdown_cell(text)],
                                  metadata={"kernelspec": src.metadata.get("kernelspec", {}),
                                            "language_info": src.metadata.get("language_info", {}),
                                            "cervix": dict(metadata or {})})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return out
