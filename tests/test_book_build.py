"""`jupyter-book build book/` as users run it, on a book folder of tiny hand-made chapters.

The chapters in book/ are written by papermill (`cervix book`) and git-ignored, so a
fresh clone has none: the build must stop with one line naming them and the command
that writes them (cervixlib.book.sphinx_ext). A chapter rewritten after a build, by a
rerun of papermill or by a copy that keeps an older modification time, must reach the
rebuilt site. Each build here is a real `jupyter-book build` subprocess over the
repository's _config.yml, _toc.yml, manifest and intro page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cervixlib.book import load_manifest, toc_documents
from cervixlib.book.sphinx_ext import missing_chapters_message

REPO = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"
#: The executed chapters, in reading order: the toc's documents that the manifest lists.
CHAPTERS = [d for d in toc_documents(REPO / "_toc.yml") if d in load_manifest(REPO / "book" / "manifest.yml").names]


def make_book(root: Path) -> Path:
    """The repository's book folder at ``root/book`` as a fresh clone has it: no chapters."""
    (root / "book").mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
        os.symlink(os.readlink(REPO / "book" / name), root / "book" / name)
    for name in ("manifest.yml", "intro.md"):
        shutil.copy(REPO / "book" / name, root / "book" / name)
    shutil.copytree(REPO / "book" / "_vendor", root / "book" / "_vendor")
    return root


def write_chapter(book: Path, name: str, text: str) -> Path:
    """A tiny executed notebook ``book/NAME.ipynb`` whose one cell printed ``text``."""
    nb = new_notebook(
        cells=[new_markdown_cell(f"# {name}"),
               new_code_cell("print(text)", execution_count=1,
                             outputs=[new_output("stream", name="stdout", text=f"{text}\n")])],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                  "language_info": {"name": "python"}})
    path = book / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def jupyter_book_build(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(JUPYTER_BOOK), "build", "book/"], cwd=root, capture_output=True,
                          text=True, timeout=300)


def page(root: Path, name: str) -> str:
    return (root / "book" / "_build" / "html" / f"{name}.html").read_text(encoding="utf-8")


def test_the_repository_book_has_chapters_and_an_intro_page():
    assert len(CHAPTERS) == 7 and CHAPTERS[0] == "00_claims", CHAPTERS
    assert "intro" in toc_documents(REPO / "_toc.yml") and "intro" not in CHAPTERS


@pytest.mark.parametrize("executed", [0, 4], ids=["fresh_clone", "some_chapters"])
def test_unexecuted_chapters_stop_the_build_with_one_line(tmp_path, executed):
    root = make_book(tmp_path / "clone")
    for name in CHAPTERS[:executed]:
        write_chapter(root / "book", name, f"output of {name}")
    missing = CHAPTERS[executed:]
    count = f"{len(missing)} of {len(CHAPTERS)}" if executed else f"{len(CHAPTERS)}"
    expected = (f"book/: {count} chapters not executed yet ({', '.join(missing)}): run `make book` or "
                "`cervix book` (or papermill each notebook of notebooks/ into book/) before "
                "`jupyter-book build book/`")

    proc = jupyter_book_build(root)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    # the line is the last thing printed, with no traceback nor Sphinx's own error around it
    assert proc.stderr.strip() == expected, out
    assert "Traceback" not in out and "master document" not in out, out
    assert not (root / "book" / "_build" / "html" / "index.html").exists()


def test_a_missing_page_is_named_as_not_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(REPO / "book" / "manifest.yml", book / "manifest.yml")
    for name in CHAPTERS:
        write_chapter(book, name, name)
    docs = toc_documents(REPO / "_toc.yml")
    assert missing_chapters_message(book, docs, [".md", ".ipynb"]) == "book/: intro listed in _toc.yml but not found"
    (book / "intro.md").write_text("# Intro\n")
    assert missing_chapters_message(book, docs, [".md", ".ipynb"]) is None


def test_a_rewritten_chapter_reaches_the_rebuilt_site(tmp_path):
    root = make_book(tmp_path / "clone")
    book = root / "book"
    for name in CHAPTERS:
        write_chapter(book, name, f"first output of {name}")
    proc = jupyter_book_build(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "first output of 01_data_exploration" in page(root, "01_data_exploration")

    # papermill reruns one chapter: a new file, newer than the build
    time.sleep(0.05)
    write_chapter(book, "01_data_exploration", "second output of 01_data_exploration")
    proc = jupyter_book_build(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = page(root, "01_data_exploration")
    assert "second output of 01_data_exploration" in html and "first output" not in html
    assert "first output of 02_baselines" in page(root, "02_baselines")

    # a chapter copied in with its older modification time (cp -p, rsync -a, an unpacked
    # archive): Sphinx alone only rereads files newer than the last build
    path = write_chapter(book, "02_baselines", "copied output of 02_baselines")
    old = time.time() - 3600
    os.utime(path, (old, old))
    proc = jupyter_book_build(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = page(root, "02_baselines")
    assert "copied output of 02_baselines" in html and "first output" not in html
    assert "copied output of 02_baselines" in (book / "_build" / "html" / "_sources" / "02_baselines.ipynb").read_text()
    assert "second output of 01_data_exploration" in page(root, "01_data_exploration")
