"""Chapters follow their data and their runs (cervixlib.book.freshness), through `cervix book`.

A fixture book of two chapters (tests/fixtures/book_freshness): ``01_data`` shows the data's
statement (counts and fingerprint, as every real chapter does) and reads no run; ``02_run``
reads one run of the smoke profile (resnet50, fold 1) and loads its checkpoint. The book is
executed with `run_book` (what `cervix book` calls; no site build: tests/test_book.py builds
one) on a copy of the generated test set, and then:

- again unchanged: both chapters are reused;
- after one flipped byte in the run's ``best.pt``: `cervix plan` lists the run as damaged; the
  book moves it to ``runs/.damaged/``, trains it again, and re-executes ``02_run`` alone;
- after one isolated cell removed and one added: both chapters re-execute, the new run is
  trained, and the page shows the new counts and fingerprint (counted here from the files).

The cheap checks behind it (the folder signature, a removed or retrained run) are unit tests
at the end, without a kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cervixlib import book
from cervixlib.book import freshness
from test_book import make_project

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "book_freshness"


def _outputs(notebook: Path) -> str:
    """Every text and HTML output of an executed notebook, as the page shows them."""
    nb = nbformat.read(notebook, as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts += [str(v) for k, v in out.get("data", {}).items() if k in ("text/plain", "text/html")]
    return "\n".join(parts)


def _files_counts(root: Path) -> dict[str, int]:
    """Multi-cell images and isolated cells of a SIPaKMeD tree, counted from its files (not load_index)."""
    multi = [p for p in root.glob("im_*/*.bmp")]
    isolated = [p for p in root.glob("im_*/CROPPED/*.bmp")]
    return {"multi": len(multi), "isolated": len(isolated)}


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_chapters_follow_their_data_and_their_runs(tmp_path, synth_root):
    root = make_project(tmp_path / "p", toc=FIXTURE / "_toc.yml", notebooks=FIXTURE / "notebooks",
                        manifest=FIXTURE / "manifest.yml", intro=FIXTURE / "intro.md")
    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    nbs, bk, runs = root / "notebooks", root / "book", root / "runs"
    kwargs = dict(data=data, notebooks_dir=nbs, book_dir=bk, runs_dir=runs, build=False, train=False)

    first = book.run_book("smoke", **kwargs)
    assert sorted(p.name for p in first.executed) == ["01_data.ipynb", "02_run.ipynb"]
    meta = nbformat.read(bk / "02_run.ipynb", as_version=4).metadata["cervix"]
    (name, digest), = meta["runs"].items()  # the one run the chapter read, by its config.json's hash
    assert digest == freshness.run_digest(runs / name)
    old_fingerprint = meta["data"]["fingerprint"]
    counts = _files_counts(data)
    assert f"fingerprint={old_fingerprint}" in _outputs(bk / "01_data.ipynb")
    assert f"'multi': {counts['multi']}, 'isolated': {counts['isolated']}" in _outputs(bk / "01_data.ipynb")

    again = book.run_book("smoke", **kwargs)
    assert again.executed == [] and len(again.reused) == 2

    # one flipped byte in the checkpoint: `cervix plan` lists the run as damaged, naming the file; the
    # book moves it aside, retrains it, and re-executes only the chapter that read it
    _flip_byte(runs / name / "best.pt")
    listed = subprocess.run([sys.executable, "-m", "cervixlib.cli", "plan", "--profile", "smoke", "--data", str(data),
                             "--runs", str(runs), "--book", str(bk), "--notebooks", str(nbs)],
                            capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert f"  damaged {name}" in listed.stdout
    assert f"{runs / name / 'best.pt'}: damaged (its SHA-256 differs" in listed.stdout
    repaired = book.run_book("smoke", **kwargs)
    assert [p.name for p in repaired.executed] == ["02_run.ipynb"]
    assert [p.name for p in repaired.reused] == ["01_data.ipynb"]
    aside, = (runs / ".damaged").iterdir()
    assert aside.name.startswith(f"{name}-")
    assert (runs / name / "best.pt").read_bytes() != (aside / "best.pt").read_bytes()
    assert nbformat.read(bk / "02_run.ipynb", as_version=4).metadata["cervix"]["runs"] == {
        name: freshness.run_digest(runs / name)}

    # the data changes: one isolated cell removed, one added (a copy under a new name)
    cells = sorted(data.glob("im_*/CROPPED/*.bmp"))
    gone, model = cells[0], cells[-1]
    for p in gone.parent.glob(f"{gone.stem}*"):
        p.unlink()
    for p in model.parent.glob(f"{model.stem}*"):
        shutil.copy(p, p.with_name(p.name.replace(model.stem, model.stem[:-2] + "99")))
    changed = book.run_book("smoke", **kwargs)
    assert sorted(p.name for p in changed.executed) == ["01_data.ipynb", "02_run.ipynb"]
    from cervixlib.data import load_index

    new_fingerprint = load_index(data).fingerprint()
    assert new_fingerprint != old_fingerprint
    assert _files_counts(data) == counts  # one out, one in
    page = _outputs(bk / "01_data.ipynb")
    assert f"fingerprint={new_fingerprint}" in page and old_fingerprint not in page
    meta = nbformat.read(bk / "02_run.ipynb", as_version=4).metadata["cervix"]
    (new_name, _), = meta["runs"].items()
    assert new_name != name and (runs / new_name / "config.json").is_file()  # the new data's run, trained
    assert f"run={new_name}" in _outputs(bk / "02_run.ipynb")
    assert meta["data"]["fingerprint"] == new_fingerprint


# ------------------------------------------------------------------ the checks behind it, no kernel
def _state(root: Path) -> freshness.DataState:
    return freshness.DataState(root, lambda: root)


def test_an_unchanged_folder_is_not_indexed_and_a_touched_one_is_indexed_once(tmp_path, synth_root, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    stored = _state(data).record()
    calls = []
    import cervixlib.data as data_pkg

    real = data_pkg.load_index
    monkeypatch.setattr(data_pkg, "load_index", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert _state(data).changed_since(stored) is None and calls == []  # sizes and times agree: no read
    some = next(data.glob("im_*/*.bmp"))
    os.utime(some, ns=(some.stat().st_atime_ns, some.stat().st_mtime_ns + 10**9))  # touched, not changed
    assert _state(data).changed_since(stored) is None and len(calls) == 1
    some.write_bytes(some.read_bytes() + b"\0")  # one byte longer: another fingerprint
    why = _state(data).changed_since(stored)
    assert why is not None and why.startswith("the data changed (fingerprint ")
    assert _state(data).changed_since({}) == "it was executed before chapters recorded their data"


def test_a_removed_or_retrained_run_makes_its_chapter_stale(tmp_path):
    runs = tmp_path / "runs"
    (runs / "r").mkdir(parents=True)
    (runs / "r" / "config.json").write_text(json.dumps({"x": 1}))
    data = tmp_path / "data"
    data.mkdir()
    state = _state(data)
    state._fingerprint = "f" * 16  # no index of an empty folder needed here
    stored = {"key": "k", "data": state.record(), "runs": {"r": freshness.run_digest(runs / "r")}}

    class Sound(freshness.RunState):  # the run's files are checked by test_run_checks; here only digests
        def digest(self, name: str) -> str | None:
            return freshness.run_digest(self.runs_dir / name)

    assert freshness.stale_reason(stored, "k", state, Sound(runs)) is None
    assert freshness.stale_reason(stored, "other", state, Sound(runs)).startswith("its notebook")
    (runs / "r" / "config.json").write_text(json.dumps({"x": 2}))
    assert freshness.stale_reason(stored, "k", state, Sound(runs)) == "run r it read was trained again"
    shutil.rmtree(runs / "r")
    assert "run r it read is missing" in freshness.stale_reason(stored, "k", state, Sound(runs))


def test_the_data_offers_its_cells_by_folder_names(tmp_path):
    """Chapter 6 (manifest ``subsets: [cells]``) is a note on a class-per-folder set without a
    masks folder, and runs on SIPaKMeD, the embedded set and a set with masks."""
    from cervixlib.layout import CELLS, root_needs

    plain = tmp_path / "plain"
    for name in ("a", "b"):
        (plain / name).mkdir(parents=True)
        (plain / name / "x.png").write_bytes(b"")
    assert root_needs(plain) == ("images",) and root_needs(None) == ("multi", "isolated", CELLS)
    (plain / "b" / "Masks").mkdir()
    assert root_needs(plain) == ("images", CELLS)
