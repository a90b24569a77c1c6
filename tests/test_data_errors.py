"""Every bad input of the data layer gives one line naming the file and the problem."""

from __future__ import annotations

import io
import logging
import pickle

import numpy as np
import pytest
from PIL import Image

from cervixlib.cli import main as cli_main
from cervixlib.data import CLASSES, BadFilesError, CellImageDataset, DataError, load_index, probe_image, read_dat, read_image


def _assert_one_line(exc: DataError, path, *words):
    text = str(exc)
    assert "\n" not in text
    assert text.startswith(f"{path}: "), text
    for word in words:
        assert word.lower() in text.lower(), text
    assert exc.path == path


def _rgb(h=30, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _crop(root, cls="Koilocytotic", name="001_01.bmp"):
    return root / f"im_{cls}" / "CROPPED" / name


# ----------------------------------------------------------------------------- folders
def test_missing_root(tmp_path):
    with pytest.raises(DataError) as err:
        load_index(tmp_path / "nowhere")
    _assert_one_line(err.value, tmp_path / "nowhere", "no such folder")


def test_root_with_no_recognisable_classes(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DataError) as err:
        load_index(tmp_path)
    _assert_one_line(err.value, tmp_path, "no SIPaKMeD class folders", "no class-per-folder images")


def test_missing_class_folder(tmp_path, build_tree):
    build_tree(tmp_path, classes=CLASSES[:4])
    with pytest.raises(DataError) as err:
        load_index(tmp_path)
    _assert_one_line(err.value, tmp_path / "im_Superficial-Intermediate", "missing class folder",
                     "Superficial-Intermediate")


@pytest.mark.parametrize("nested", [False, True])
def test_empty_class_folder(tmp_path, build_tree, nested):
    build_tree(tmp_path, classes=[c for c in CLASSES if c != "Parabasal"], nested=nested)
    empty = tmp_path / "im_Parabasal"
    (empty / "im_Parabasal" if nested else empty).mkdir(parents=True)
    with pytest.raises(DataError) as err:
        load_index(tmp_path, skip_bad=True)  # structural problems are never skipped
    _assert_one_line(err.value, empty / "im_Parabasal" if nested else empty, "empty class folder", "Parabasal")


def test_empty_class_folder_in_a_class_per_folder_set(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(_rgb()).save(tmp_path / "a" / "x.png")
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError) as err:
        load_index(tmp_path)
    _assert_one_line(err.value, tmp_path / "b", "empty class folder")


def test_missing_cropped_folder_is_a_warning_then_an_error_for_that_subset(sipakmed_tree):
    import shutil

    cropped = sipakmed_tree / "im_Parabasal" / "CROPPED"
    shutil.rmtree(cropped)
    index = load_index(sipakmed_tree)
    assert any("no CROPPED folder" in why for _, why in index.warnings)
    assert len(index.subset("multi")) == 10
    with pytest.raises(DataError, match="no images of class Parabasal"):
        index.subset("isolated")


# ----------------------------------------------------------------------------- images
def test_corrupt_image(sipakmed_tree):
    bad = _crop(sipakmed_tree)
    bad.write_bytes(b"this is not a bitmap at all" * 10)
    for call in (load_index, ):
        with pytest.raises(DataError) as err:
            call(sipakmed_tree)
        _assert_one_line(err.value, bad, "corrupt image")
    with pytest.raises(DataError) as err:
        read_image(bad)
    _assert_one_line(err.value, bad, "corrupt image")


def test_empty_image_file(tmp_path):
    bad = tmp_path / "x.bmp"
    bad.write_bytes(b"")
    with pytest.raises(DataError) as err:
        read_image(bad)
    _assert_one_line(err.value, bad, "empty file")


def test_truncated_bmp_is_found_when_indexing(sipakmed_tree):
    bad = sipakmed_tree / "im_Dyskeratotic" / "002.bmp"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) - 100])
    with pytest.raises(DataError) as err:
        load_index(sipakmed_tree)
    _assert_one_line(err.value, bad, "truncated", "the BMP header needs")
    with pytest.raises(DataError) as err:
        read_image(bad)
    _assert_one_line(err.value, bad, "truncated")


@pytest.mark.parametrize("fmt,ext", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_truncated_png_and_jpeg_are_found_when_indexing(tmp_path, fmt, ext):
    (tmp_path / "cls").mkdir()
    bad = tmp_path / "cls" / f"x{ext}"
    buf = io.BytesIO()
    Image.fromarray(_rgb(60, 80)).save(buf, format=fmt)
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError) as err:
        load_index(tmp_path)
    _assert_one_line(err.value, bad, "truncated")


def test_truncated_tiff_is_found_when_read(tmp_path):
    # TIFF has no cheap end marker: the header probe passes, the full read must not.
    (tmp_path / "cls").mkdir()
    bad = tmp_path / "cls" / "x.tif"
    buf = io.BytesIO()
    Image.fromarray(_rgb(60, 80)).save(buf, format="TIFF")
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert probe_image(bad).size == (80, 60)
    index = load_index(tmp_path)
    ds = CellImageDataset(index.images, image_size=16, train=False)
    with pytest.raises(DataError) as err:
        ds[0]
    _assert_one_line(err.value, bad, "truncated")
    with pytest.raises(DataError) as err:
        load_index(tmp_path, verify=True)
    _assert_one_line(err.value, bad, "truncated")


def test_content_not_matching_extension(sipakmed_tree):
    bad = _crop(sipakmed_tree, "Metaplastic", "002_02.bmp")
    Image.fromarray(_rgb()).save(bad, format="PNG")
    with pytest.raises(DataError) as err:
        load_index(sipakmed_tree)
    _assert_one_line(err.value, bad, "content is PNG", "not BMP")
    with pytest.raises(DataError) as err:
        read_image(bad)
    _assert_one_line(err.value, bad, "content is PNG")


# ----------------------------------------------------------------------------- pixel modes
def test_convertible_modes_become_rgb(tmp_path):
    grey = np.arange(12 * 10, dtype=np.uint8).reshape(10, 12)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    out = np.asarray(read_image(tmp_path / "grey.png"))
    assert out.shape == (10, 12, 3) and (out == grey[..., None]).all()

    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:5, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    out = np.asarray(read_image(tmp_path / "rgba.png"))
    assert (out[:5] == [200, 0, 0]).all() and (out[5:] == 255).all()  # transparent -> white

    rgb = _rgb(10, 12)
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.bmp")
    assert np.asarray(read_image(tmp_path / "pal.bmp")).shape == (10, 12, 3)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    cmyk = np.asarray(read_image(tmp_path / "cmyk.tif"))
    assert np.abs(cmyk.astype(int) - rgb).max() <= 2


def test_sixteen_bit_grey_is_scaled_to_eight_bits(tmp_path):
    values = np.array([[0, 257, 257 * 100, 65535], [128, 32896, 65280, 65534]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = np.asarray(read_image(tmp_path / "deep.png"))
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert (out == expected[..., None]).all()


def test_unconvertible_modes_raise(tmp_path):
    Image.fromarray(np.ones((8, 8), dtype=np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(DataError) as err:
        read_image(tmp_path / "float.tif")
    _assert_one_line(err.value, tmp_path / "float.tif", "unsupported pixel mode 'F'")
    with pytest.raises(DataError) as err:
        probe_image(tmp_path / "float.tif")
    _assert_one_line(err.value, tmp_path / "float.tif", "unsupported pixel mode")
    Image.fromarray(np.full((8, 8), 70000, dtype=np.int32)).save(tmp_path / "int32.tif")
    with pytest.raises(DataError) as err:
        read_image(tmp_path / "int32.tif")
    _assert_one_line(err.value, tmp_path / "int32.tif", "outside 0..65535")


# ----------------------------------------------------------------------------- .dat files
@pytest.mark.parametrize("content,words", [
    ("1,2\n3,4\n", ["only 2 point", "at least 3"]),
    ("1,2\n3,nan\n5,6\n", ["line 2", "non-finite"]),
    ("1,2\n3,inf\n5,6\n", ["line 2", "non-finite"]),
    ("1,2\nthree,4\n5,6\n", ["line 2", "not a number"]),
    ("1,2\n3,4,5\n5,6\n", ["line 2", "two numbers"]),
    ("x,y\n1,2\n3,4\n5,6\n", ["line 1", "not a number"]),
    ("", ["empty"]),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", ["not a text file"]),
])
def test_malformed_dat(tmp_path, content, words):
    bad = tmp_path / "001_cyt01.dat"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError) as err:
        read_dat(bad)
    _assert_one_line(err.value, bad, *words)


def test_malformed_dat_found_when_indexing(sipakmed_tree):
    bad = sipakmed_tree / "im_Superficial-Intermediate" / "CROPPED" / "002_01_nuc.dat"
    bad.write_text("10,10\n11,nan\n12,10\n")
    with pytest.raises(DataError) as err:
        load_index(sipakmed_tree)
    _assert_one_line(err.value, bad, "line 2", "non-finite")


# ----------------------------------------------------------------------------- skip_bad
def test_skip_bad_lists_every_skipped_file(sipakmed_tree, caplog, capsys):
    bad = {
        _crop(sipakmed_tree, "Dyskeratotic", "001_01.bmp"): "corrupt image",
        sipakmed_tree / "im_Koilocytotic" / "002.bmp": "truncated",
        _crop(sipakmed_tree, "Parabasal", "002_02.bmp"): "content is PNG",
        sipakmed_tree / "im_Metaplastic" / "001_cyt02.dat": "line 2",
        _crop(sipakmed_tree, "Superficial-Intermediate", "001_02_cyt.dat"): "at least 3",
    }
    paths = list(bad)
    paths[0].write_bytes(b"garbage" * 20)
    paths[1].write_bytes(paths[1].read_bytes()[:200])
    Image.fromarray(_rgb(18, 18)).save(paths[2], format="PNG")
    paths[3].write_text("1,2\noops\n3,4\n")
    paths[4].write_text("1,2\n3,4\n")
    with pytest.raises(BadFilesError) as err:  # without skip_bad: all five at once, one line each
        load_index(sipakmed_tree)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{sipakmed_tree}: 5 bad files") and "--skip-bad" in lines[0]
    assert sorted(lines[1:]) == sorted(f"  {p}: {why}" for p, why in err.value.problems)
    assert {p for p, _ in err.value.problems} == set(bad)
    with caplog.at_level(logging.WARNING, logger="cervixlib.data.index"):
        index = load_index(sipakmed_tree, skip_bad=True)
    skipped = dict(index.skipped)
    assert set(skipped) == set(bad)
    for path, word in bad.items():
        assert word in skipped[path]
        assert str(path.relative_to(sipakmed_tree)) in caplog.text  # the log names it below the set's folder
        assert str(sipakmed_tree) not in caplog.text  # (a page shows that line: no path of the machine)
        assert str(path) in index.describe()
    counts_multi, counts_iso = index.class_counts("multi"), index.class_counts("isolated")
    assert counts_multi["Koilocytotic"] == 1 and counts_iso["Dyskeratotic"] == 3
    assert counts_iso["Parabasal"] == 3
    # a bad cytoplasm file drops that cell only, not its image
    met = [it for it in index.multi if it.label == CLASSES.index("Metaplastic") and it.path.stem == "001"][0]
    assert len(met.cells) == 1
    sup_crop = [it for it in index.isolated if it.path.stem == "001_02" and it.label == 4][0]
    assert sup_crop.cells == ()

    assert cli_main(["info", str(sipakmed_tree), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "Skipped      5 bad file(s)" in out
    for path in bad:
        assert str(path) in out
    # by default too, `cervix info` lists every bad file, then fails
    assert cli_main(["info", str(sipakmed_tree)]) == 2
    captured = capsys.readouterr()
    assert "Skipped      5 bad file(s)" in captured.out
    for path in bad:
        assert str(path) in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cervix info: error: 5 bad files")
    assert "Traceback" not in captured.err


def test_data_error_is_one_line_and_pickles(tmp_path):
    exc = DataError(tmp_path / "x.bmp", "first line\nsecond line")
    assert str(exc) == f"{tmp_path / 'x.bmp'}: first line second line"
    again = pickle.loads(pickle.dumps(exc))
    assert str(again) == str(exc) and again.path == exc.path and again.problem == exc.problem
    assert isinstance(exc, ValueError)


def _class_folders(root, counts, sub=None):
    for name, n in counts.items():
        folder = root / name / (sub or "")
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_rgb(16, 16)).save(folder / f"{i}.png")
    return root


def test_a_class_per_folder_set_that_cannot_be_trained_says_what_it_needs(tmp_path):
    from cervixlib.config import make_config
    from cervixlib.data import prepare

    one = _class_folders(tmp_path / "one", {"only class": 9})
    with pytest.raises(DataError, match=r"1 class with images: a classifier needs at least two"):
        prepare(make_config("resnet50", profile="smoke", root=str(one)).data).split
    tiny = _class_folders(tmp_path / "tiny", {"A": 2, "B": 2})
    with pytest.raises(DataError, match=r"smallest class, A, 2\): too few .* or use fewer folds"):
        prepare(make_config("resnet50", profile="smoke", root=str(tiny)).data).split
    nested = _class_folders(tmp_path / "nested", {"A": 3}, sub="deeper")
    _class_folders(nested, {"B": 3})
    with pytest.raises(DataError, match=r"sub-folders are not searched; supported layouts: SIPaKMeD"):
        load_index(nested)
