"""Chapter 1 on a class-per-folder set: the file statistics of cervixlib.data.stats
(sizes, formats, duplicates, odd files) against independent references (PIL's own
reading of each file, byte-by-byte comparison), the figures' long class names, and the
chapter itself run on such a set."""

from __future__ import annotations

import filecmp
import itertools
import json
import shutil
import statistics
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from cervixlib import figures
from cervixlib.data import load_index
from cervixlib.data.stats import (copies_in_training, duplicate_files, duplicate_rows, file_problem_rows,
                                  has_cell_boundaries, image_size_rows, table1_rows)
from conftest import CLASS_FOLDER_NAMES, build_class_folder_set

REPO = Path(__file__).resolve().parents[1]
#: Words that belong to SIPaKMeD's chapter only; a class-per-folder page names none of them
#: outside the sentences that say why a SIPaKMeD section does not apply.
SIPAKMED_WORDS = ("Dyskeratotic", "Koilocytotic", "Parabasal", "Superficial", "966", "4,049", "4049",
                  "isolated cells", "Table I", "Fig. 1")


@pytest.fixture(scope="module")
def six_classes(tmp_path_factory, synth_index):
    """A 6-class set (one class name with spaces, mixed PNG/JPEG/BMP and sizes) plus oddities:
    one image copied twice (once into another class), a grey image, a note beside the
    images, an image in a sub-folder, a file beside the class folders and a hidden file."""
    root = build_class_folder_set(tmp_path_factory.mktemp("six") / "my-cells", synth_index, n_classes=6)
    first = sorted((root / "LSIL").iterdir())[0]
    shutil.copy(first, root / "LSIL" / f"copy_{first.name}")
    shutil.copy(first, root / "HSIL" / f"dup_{first.name}")
    Image.open(sorted((root / "SCC").glob("*"))[0]).convert("L").save(root / "SCC" / "grey.png")
    (root / "ASC-US" / "notes.txt").write_text("not an image")
    (root / "SCC" / "extra").mkdir()
    shutil.copy(sorted((root / "SCC").glob("*.png"))[0], root / "SCC" / "extra" / "deeper.png")
    (root / "labels.csv").write_text("file,class\n")
    (root / "ASC-US" / ".DS_Store").write_bytes(b"\0")
    return root


def test_size_table_agrees_with_pil(six_classes):
    index = load_index(six_classes)
    rows = image_size_rows(index.images, index.classes)
    assert [r["class"] for r in rows] == [*sorted(CLASS_FOLDER_NAMES), "total"]
    for row in rows:
        folders = [six_classes / row["class"]] if row["class"] != "total" else \
            [six_classes / c for c in CLASS_FOLDER_NAMES]
        files = [p for f in folders for p in f.iterdir() if p.is_file() and p.suffix in (".png", ".jpg", ".bmp")]
        opened = [Image.open(p) for p in files]
        widths, heights = [im.width for im in opened], [im.height for im in opened]
        assert row["images"] == len(files)
        assert row["width px"] == f"{min(widths)} / {statistics.median(widths):g} / {max(widths)}"
        assert row["height px"] == f"{min(heights)} / {statistics.median(heights):g} / {max(heights)}"
        formats = Counter(im.format for im in opened)
        assert dict((name, int(n)) for name, n in (part.rsplit(" ", 1) for part in row["formats"].split(", "))) \
            == formats
        modes = Counter(im.mode for im in opened)
        assert dict((m, int(n)) for m, n in (part.rsplit(" ", 1) for part in row["pixel modes"].split(", "))) == modes
    total = rows[-1]
    assert "L 1" in total["pixel modes"]
    assert {"BMP", "JPEG", "PNG"} <= {p.split()[0] for p in total["formats"].split(", ")}


def test_a_class_without_images_gets_an_empty_row():
    items = [SimpleNamespace(path=Path("/nonexistent.png"), label=0, size=(10, 20))]
    rows = image_size_rows(items, ["a", "b"])
    assert rows[1] == {"class": "b", "images": 0}
    assert rows[0]["formats"] == "unreadable 1" and rows[0]["width px"] == "10 / 10 / 10"


def _bmp(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def test_duplicates_are_the_byte_identical_files(tmp_path):
    """Against filecmp's byte-by-byte comparison of every pair, on files built to fool each
    stage: same size, same first 64 KiB, different last byte; same bytes under other names."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)  # an uncompressed BMP of 77 KiB
    a = _bmp(tmp_path / "a.bmp", pixels)
    shutil.copy(a, tmp_path / "a_copy.bmp")
    shutil.copy(a, tmp_path / "a_again.bmp")
    tail = bytearray(a.read_bytes())
    tail[-1] ^= 0xFF  # same size and first 64 KiB, another last byte
    (tmp_path / "a_tail.bmp").write_bytes(bytes(tail))
    b = _bmp(tmp_path / "b.bmp", pixels[::-1].copy())  # same size, different bytes early on
    shutil.copy(b, tmp_path / "b_copy.bmp")
    _bmp(tmp_path / "c.bmp", pixels[:80])  # another size
    paths = sorted(tmp_path.iterdir())
    assert (1 << 16) < a.stat().st_size and a.read_bytes()[: 1 << 16] == bytes(tail[: 1 << 16])
    items = [SimpleNamespace(path=p, label=k % 2, size=(160, 160)) for k, p in enumerate(paths)]
    found = duplicate_files(items)
    same = {(i, j) for i, j in itertools.combinations(range(len(paths)), 2)
            if filecmp.cmp(paths[i], paths[j], shallow=False)}
    assert {(i, j) for group in found for i, j in itertools.combinations(group, 2)} == same
    assert [[paths[k].name for k in g] for g in found] == [["a.bmp", "a_again.bmp", "a_copy.bmp"],
                                                           ["b.bmp", "b_copy.bmp"]]
    rows = duplicate_rows(items, found, ["x", "y"], tmp_path)
    assert rows[0] == {"copies": 3, "classes": "x, y", "files": "a.bmp, a_again.bmp, a_copy.bmp",
                       "bytes": a.stat().st_size}


def test_copies_on_both_sides_of_a_split_are_counted():
    duplicates = [[0, 5], [1, 2, 7], [3, 4]]
    split = SimpleNamespace(train=np.array([0, 1, 3, 4]), val=np.array([6, 7]), test=np.array([2, 5, 8]))
    assert copies_in_training(None, split, duplicates) == 2  # 2 (copy of 1) and 5 (copy of 0); 8 has none
    assert copies_in_training(None, split, duplicates, part="val") == 1  # 7 (copy of 1)
    assert copies_in_training(None, split, []) == 0


def test_the_duplicate_in_the_set_is_found_and_named(six_classes):
    index = load_index(six_classes)
    found = duplicate_files(index.images)
    rows = duplicate_rows(index.images, found, index.classes, index.root)
    first = sorted((six_classes / "LSIL").iterdir())[0].name  # copy_... sorts before lsil_...
    original = first.removeprefix("copy_")
    assert rows == [{"copies": 3, "classes": "HSIL, LSIL",
                     "files": f"HSIL/dup_{original}, LSIL/copy_{original}, LSIL/{original}",
                     "bytes": (six_classes / "LSIL" / original).stat().st_size}]


def test_odd_files_are_what_the_index_did_not_read(six_classes, tmp_path):
    rows = file_problem_rows(load_index(six_classes))
    assert {r["file"]: r["what"] for r in rows} == {
        "labels.csv": "not read", "ASC-US/notes.txt": "not read", "SCC/extra/deeper.png": "not read"}
    why = {r["file"]: r["why"] for r in rows}
    assert "sub-folders are not searched" in why["SCC/extra/deeper.png"]
    assert "not an image file (.txt)" in why["ASC-US/notes.txt"]
    # a damaged image: left out with skip_bad, and listed with load_index's own words
    root = shutil.copytree(six_classes, tmp_path / "damaged")
    good = sorted((root / "SCC").glob("*.png"))[0].read_bytes()
    (root / "SCC" / "broken.png").write_bytes(good[: len(good) // 2])
    index = load_index(root, skip_bad=True)
    rows = file_problem_rows(index)
    left = [r for r in rows if r["what"] == "left out"]
    assert [(r["file"], r["why"]) for r in left] == [("SCC/broken.png", index.skipped[0][1])]
    assert len(rows) == 4
    capped = file_problem_rows(index, limit=2)
    assert len(capped) == 3 and capped[-1]["file"] == "... and 2 more"


def test_sipakmed_lists_only_the_index_own_problems(synth_root):
    index = load_index(synth_root)
    assert has_cell_boundaries(index)
    assert [(r["file"], r["what"]) for r in file_problem_rows(index)] == \
        [(p.relative_to(index.root).as_posix(), "warning") for p, _ in index.warnings]


def test_a_class_folder_set_has_no_boundaries_and_its_own_counts(six_classes):
    index = load_index(six_classes)
    assert not has_cell_boundaries(index)
    counts = {r["class"]: r["images"] for r in table1_rows(index)}
    assert counts == {**{c: len([p for p in (six_classes / c).iterdir() if p.suffix in (".png", ".jpg", ".bmp")])
                         for c in CLASS_FOLDER_NAMES}, "total": len(index.images)}


def test_long_class_names_wrap_in_the_figures(six_classes):
    index = load_index(six_classes)
    fig = figures.sample_grid(index, "images", per_class=4, seed=0)
    titles = [a.text for a in fig.layout.annotations]
    assert "Negative for<br>intraepithelial<br>lesion" in titles and "ASC-US" in titles
    assert all(len(line) <= 18 for t in titles for line in t.split("<br>"))
    assert len(fig.data) == 4 * len(index.classes)
    box = figures.box_by_class([{"class": c, "v": 1.0} for c in index.classes], "v", index.classes)
    assert [t.name for t in box.data][-2:] == ["Negative for<br>intraepithelial<br>lesion", "SCC"]
    # SIPaKMeD's names are single words: unchanged, hyphenated ones included
    assert figures.box_by_class([], "v", ["Superficial-Intermediate"]).data[0].name == "Superficial-Intermediate"


def test_chapter_1_prose_cells_name_no_dataset():
    """The chapter's Markdown cells hold what is true of any data; what is SIPaKMeD's is
    written by code cells that check the data first."""
    nb = json.loads((REPO / "notebooks" / "01_data_exploration.ipynb").read_text())
    prose = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert [w for w in (*SIPAKMED_WORDS, "SIPaKMeD", "multi-cell") if w in prose] == []


@pytest.mark.slow
def test_chapter_1_on_a_class_folder_set(six_classes, tmp_path):
    """The chapter, executed on the set as `cervix book --data` does: its classes, sizes,
    duplicate and odd files, one sample grid, the split with the duplicate count; nothing of SIPaKMeD."""
    from cervixlib import book

    out = book.execute_notebook(REPO / "notebooks" / "01_data_exploration.ipynb", tmp_path / "01.ipynb",
                                {"profile": "smoke", "data_root": str(six_classes), "runs_dir": str(tmp_path / "runs")},
                                cwd=tmp_path)
    nb = json.loads(out.read_text())
    shown = []
    n_figures = 0
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            shown.append("".join(cell["source"]))
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            n_figures += "application/vnd.plotly.v1+json" in data
            shown += ["".join(data[k]) for k in ("text/markdown", "text/html") if k in data
                      and "application/vnd.plotly.v1+json" not in data]
    page = "\n".join(shown)
    assert n_figures == 1  # the sample grid; no morphometry without boundaries
    assert "Negative for intraepithelial lesion" in page and "labels.csv" in page
    assert "HSIL/dup_" in page and "No cell boundaries" in page
    assert "byte-identical copy among the training images:" in page
    assert [w for w in SIPAKMED_WORDS if w in page] == []
    # SIPaKMeD is named once, to say why its leakage count is not shown
    assert page.count("SIPaKMeD") == 1 and "SIPaKMeD's leakage count" in page
