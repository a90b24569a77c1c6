"""A chapter that does not apply to the book's data, written as a page that says why.

Chapter 4 compares SIPaKMeD's multi-cell images with its isolated cells; a
class-per-folder set has one subset. Chapter 6 makes graphs of each image's cells; a
class-per-folder set without mask files has none. ``book/manifest.yml`` lists the subsets such a
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
from cervixlib.layout import CELLS, CLASS_FOLDERS, data_label

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
    subsets = [s for s in available if s != CELLS]
    name = "the embedded synthetic set" if data is None else data_label(
        Path(data).name, CLASS_FOLDERS if tuple(subsets) == ("images",) else "sipakmed")
    if CELLS in missing:
        text = (f"**Not applicable to this data.** This chapter makes a graph of the cells of each image, "
                f"so it needs to know where the cells are: SIPaKMeD's `.dat` outlines, or a mask file for each "
                f"image of a class-per-folder set (`<class>/masks/<stem>.png`). The book's data, {name}, has "
                "neither, so the chapter was not run and the front page lists its claim as not testable. "
                "Add the masks, or run the book on SIPaKMeD (`cervix book --data SIPAKMED_ROOT`), for it.")
    else:
        need = " and ".join(SUBSET_WORDS[s] for s in missing)
        has = " and ".join(SUBSET_WORDS[s] for s in subsets)
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
