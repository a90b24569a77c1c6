"""Each bad input of docs/bad_inputs.md, through the command line a user runs.

Every test runs ``cervix info`` (in-process through ``cli.main``, or as a real process
where the process itself matters) and checks what reaches the user: the exit status,
the file named with what is wrong, and never a Python traceback. An unexpected
exception inside ``cli.main`` would escape it and fail the test, which is the in-process
form of a traceback reaching the user.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cervixlib.cli import main as cli_main
from cervixlib.data import CellImageDataset, load_index, read_image

_SRC = Path(__file__).resolve().parents[1] / "src"


def _info(capsys, root: Path, *extra: str) -> tuple[int, str, str]:
    """``cervix info ROOT`` in-process: (exit status, stdout, stderr); no traceback."""
    rc = cli_main(["info", str(root), *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return rc, captured.out, captured.err


def _assert_reported(capsys, root: Path, path: Path, *words: str) -> str:
    """``cervix info`` fails with status 2 and names ``path`` and ``words`` on one line."""
    rc, out, err = _info(capsys, root)
    assert rc == 2, out + err
    text = out + err
    line = next((ln for ln in text.splitlines()
                 if ln.strip().removeprefix("cervix info: error: ").startswith(f"{path}: ")), None)
    assert line is not None, text
    for word in words:
        assert word.lower() in line.lower(), line
    return line


def _folders(root: Path, n: int = 2, size: tuple[int, int] = (12, 10)) -> Path:
    """A class-per-folder set: ``root/a`` and ``root/b`` with ``n`` RGB PNGs each."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


# ----------------------------------------------------------------------------- images
def test_truncated_image(capsys, sipakmed_tree, tmp_path):
    bad = sipakmed_tree / "im_Dyskeratotic" / "002.bmp"
    bad.write_bytes(bad.read_bytes()[:-100])
    _assert_reported(capsys, sipakmed_tree, bad, "truncated image")
    # training refuses the set with the same message, before any training starts
    rc = cli_main(["train", "--model", "resnet50", "--profile", "smoke", "--data", str(sipakmed_tree),
                   "--runs", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and f"{bad}: truncated image" in err and "Traceback" not in err


def test_other_format_under_a_bmp_name(capsys, sipakmed_tree):
    bad = sipakmed_tree / "im_Metaplastic" / "CROPPED" / "001_01.bmp"
    Image.fromarray(np.zeros((18, 18, 3), np.uint8)).save(bad, format="JPEG")
    _assert_reported(capsys, sipakmed_tree, bad, "content is JPEG", "not BMP")


def test_empty_image_file(capsys, sipakmed_tree):
    bad = sipakmed_tree / "im_Parabasal" / "001.bmp"
    bad.write_bytes(b"")
    _assert_reported(capsys, sipakmed_tree, bad, "empty file (0 bytes)")


def _png_48_bit(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand (PIL cannot write one)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\0" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_sixteen_bit_palette_rgba_and_grey_images_load_as_rgb(capsys, tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    grey16 = grey.astype(np.uint16) * 257
    rgba = np.dstack([rgb, np.full((10, 12), 255, np.uint8)])
    root = tmp_path / "modes"
    for name in ("a", "b"):
        folder = root / name
        folder.mkdir(parents=True)
        Image.fromarray(grey16).save(folder / "grey16.png")
        _png_48_bit(folder / "rgb48.png", rgb.astype(np.uint16) * 257)
        Image.fromarray(rgb).quantize(16).save(folder / "palette.bmp")
        Image.fromarray(rgba).save(folder / "rgba.png")
        Image.fromarray(grey).save(folder / "grey.bmp")
    expected = {"grey16.png": np.dstack([grey] * 3), "rgb48.png": rgb, "rgba.png": rgb,
                "grey.bmp": np.dstack([grey] * 3)}
    index = load_index(root)
    assert index.skipped == [] and len(index.images) == 10
    assert Image.open(root / "a" / "grey16.png").mode.startswith("I")
    assert Image.open(root / "a" / "palette.bmp").mode == "P"
    for item in index.images:
        out = read_image(item.path)
        assert out.mode == "RGB" and out.size == (12, 10)
        if item.path.name in expected:
            assert (np.asarray(out) == expected[item.path.name]).all(), item.path.name
    X, _ = CellImageDataset(index.images, image_size=16, train=False)[0]
    assert X.shape == (3, 16, 16)
    rc, out, _ = _info(capsys, root)
    assert rc == 0 and "Problems     none" in out


def _bmp_header(width: int, height: int) -> bytes:
    """The 54-byte header of a 24-bit BMP of ``width`` x ``height``, without pixels."""
    row = (width * 3 + 3) // 4 * 4
    return (b"BM" + struct.pack("<IHHI", 54 + row * height, 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, row * height, 2835, 2835, 0, 0))


def test_decompression_bomb(capsys, tmp_path):
    root = _folders(tmp_path / "set")
    bad = root / "a" / "bomb.bmp"
    bad.write_bytes(_bmp_header(30000, 30000))  # 900 Mpixel claimed in a 54-byte file
    _assert_reported(capsys, root, bad, "image too large to open safely")


# ----------------------------------------------------------------------------- .dat files
@pytest.mark.parametrize("content,words", [
    ("10,10\n11,nan\n12,10\n", ["line 2", "non-finite"]),
    ("10,10\nleft,10\n12,10\n", ["line 2", "not a number"]),
    ("10,10\n", ["only 1 point", "at least 3"]),
    ("10,5;20,5\n11;12\n13;14\n", ["line 1", "decimal commas are not supported"]),
], ids=["nan", "text", "one-point", "decimal-comma"])
def test_bad_dat_files_are_rejected(capsys, sipakmed_tree, content, words):
    bad = sipakmed_tree / "im_Koilocytotic" / "001_cyt01.dat"
    bad.write_text(content)
    _assert_reported(capsys, sipakmed_tree, bad, *words)


@pytest.mark.parametrize("sep", [";", "\t", " ; "], ids=["semicolon", "tab", "spaced-semicolon"])
def test_dat_files_with_semicolons_or_tabs_load_like_commas(capsys, sipakmed_tree, sep):
    reference = load_index(sipakmed_tree)
    for dat in (sipakmed_tree / "im_Koilocytotic").rglob("*.dat"):
        dat.write_text(dat.read_text().replace(",", sep))
    index = load_index(sipakmed_tree)
    for a, b in zip(reference.multi + reference.isolated, index.multi + index.isolated):
        assert len(a.cells) == len(b.cells) > 0
        for ca, cb in zip(a.cells, b.cells):
            np.testing.assert_array_equal(ca.cytoplasm, cb.cytoplasm)
            np.testing.assert_array_equal(ca.nucleus, cb.nucleus)
    rc, out, _ = _info(capsys, sipakmed_tree)
    assert rc == 0 and "Problems     none" in out


# ----------------------------------------------------------------------------- folders
def test_empty_class_folder(capsys, tmp_path, build_tree):
    build_tree(tmp_path / "sipakmed")
    empty = tmp_path / "sipakmed" / "im_Parabasal"
    shutil.rmtree(empty)
    empty.mkdir()
    _assert_reported(capsys, tmp_path / "sipakmed", empty, "empty class folder", "Parabasal")
    folders = _folders(tmp_path / "folders")
    (folders / "c").mkdir()
    _assert_reported(capsys, folders, folders / "c", "empty class folder")


def test_unknown_folder_beside_the_class_folders(capsys, sipakmed_tree):
    (sipakmed_tree / "notes").mkdir()
    (sipakmed_tree / "notes" / "scan.bmp").write_bytes(b"not read")
    (sipakmed_tree / "im_Parabasal" / "old").mkdir()
    rc, out, _ = _info(capsys, sipakmed_tree)
    assert rc == 0  # a warning: the folder is not part of the set, nothing in it is read
    assert f"{sipakmed_tree / 'notes'}: not a SIPaKMeD class folder" in out
    assert f"{sipakmed_tree / 'im_Parabasal' / 'old'}: unknown folder in a class folder" in out


def test_every_problem_at_once_in_a_real_process(tmp_path, sipakmed_tree):
    """Several bad inputs in one tree: `cervix info` and `cervix train` list them all."""
    bad = [sipakmed_tree / "im_Dyskeratotic" / "001.bmp", sipakmed_tree / "im_Metaplastic" / "002_nuc01.dat",
           sipakmed_tree / "im_Parabasal" / "CROPPED" / "002_02.bmp"]
    bad[0].write_bytes(b"")
    bad[1].write_text("1,2\n")
    bad[2].write_bytes(bad[2].read_bytes()[:80])
    env = {**os.environ, "PYTHONPATH": str(_SRC)}
    for argv in (["info", str(sipakmed_tree)],
                 ["train", "--model", "resnet50", "--profile", "smoke", "--data", str(sipakmed_tree),
                  "--runs", str(tmp_path / "runs"), "--quiet"]):
        proc = subprocess.run([sys.executable, "-m", "cervixlib.cli", *argv], capture_output=True, text=True,
                              env=env, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        for path in bad:
            assert f"{path}: " in proc.stdout + proc.stderr
    assert "3 bad files, listed below" in proc.stderr  # train: the count first, then one line a file
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_skip_bad_trains_without_them_and_the_run_says_how_many(capsys, tmp_path, build_tree):
    """`--skip-bad` trains on the rest; the run records the count, and reloads with the same choice."""
    from cervixlib.display import study_statement
    from cervixlib.runs import load_run
    from cervixlib.study import Study

    sipakmed_tree = tmp_path / "sipakmed"
    build_tree(sipakmed_tree, n_images=10, n_cells=1)  # 10 source images a class: a grouped split with a test part
    bad = sipakmed_tree / "im_Parabasal" / "CROPPED" / "002_01.bmp"
    bad.write_bytes(b"")
    argv = ["train", "--model", "resnet50", "--profile", "smoke", "--data", str(sipakmed_tree),
            "--subset", "isolated", "--runs", str(tmp_path / "runs"), "--quiet"]
    assert cli_main(argv) == 2  # refused by default, naming the file
    assert f"{bad}: empty file" in capsys.readouterr().err
    assert cli_main([*argv, "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "Traceback" not in out and "(1 bad file left out, --skip-bad)" in out
    run = load_run(next(p for p in (tmp_path / "runs").iterdir() if p.is_dir()))
    assert run.info["skipped_files"] == 1 and run.config.data.skip_bad
    assert [p for p, _ in run.dataset_index.skipped] == [bad]
    assert len(run.items()) == 49
    statement = study_statement(Study(profile="smoke", data_root=str(sipakmed_tree), skip_bad=True))
    assert "1 bad file left out (skip_bad)" in statement and str(sipakmed_tree) not in statement


# ----------------------------------------------------------------------------- the file system
def _run_as_nobody() -> list[str] | None:
    """The command prefix that runs a process as an unprivileged user, or None."""
    if os.geteuid() != 0:
        return []  # already unprivileged: chmod 000 is enough
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_unreadable_file(tmp_path):
    prefix = _run_as_nobody()
    if prefix is None:
        pytest.skip("running as root without setpriv: root reads a chmod 000 file, so no test can see it fail")
    with tempfile.TemporaryDirectory(prefix="cervix-unreadable-") as tmp:  # pytest's tmp is 0700 root-only
        top = Path(tmp)
        os.chmod(top, 0o755)
        root = _folders(top / "set")
        bad_image, bad_dir = root / "a" / "0.png", root / "b"
        os.chmod(bad_image, 0)
        os.chmod(bad_dir, 0o311)  # can enter, cannot list
        home = top / "home"
        home.mkdir(mode=0o777)
        os.chmod(home, 0o777)
        env = {**os.environ, "PYTHONPATH": str(_SRC), "HOME": str(home), "MPLCONFIGDIR": str(home)}
        proc = subprocess.run([*prefix, sys.executable, "-m", "cervixlib.cli", "info", str(root)],
                              capture_output=True, text=True, env=env, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in text, text
    assert f"{bad_image}: permission denied" in text
    assert f"{bad_dir}: cannot list folder: permission denied" in text


def test_symlink_loop(capsys, tmp_path):
    root = _folders(tmp_path / "set")
    a, b = root / "a" / "x.png", root / "a" / "y.png"
    a.symlink_to(b.name)
    b.symlink_to(a.name)
    (root / "b" / "up").symlink_to("..", target_is_directory=True)  # a folder loop: a warning only
    dangling = root / "b" / "gone.png"
    dangling.symlink_to("nowhere.png")
    _assert_reported(capsys, root, a, "symbolic link loop")
    _assert_reported(capsys, root, dangling, "broken symbolic link")
    rc, out, _ = _info(capsys, root, "--skip-bad")
    assert rc == 0 and f"{root / 'b' / 'up'}: symbolic link to this folder or one above it" in out


def test_names_with_spaces_and_non_utf8_bytes(capsys, tmp_path):
    root = _folders(tmp_path / "set")
    spaced = root / "Zeta cells"
    spaced.mkdir()
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(spaced / "cell one.png")
    raw = os.fsdecode(b"caf\xe9 \xff.png")  # Latin-1 bytes: not UTF-8, legal on Linux
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(spaced / raw)
    index = load_index(root)
    zeta = index.classes.index("Zeta cells")
    assert {p.path.name for p in index.images if p.label == zeta} == {"cell one.png", raw}
    assert len(index.fingerprint()) == 16
    rc, out, _ = _info(capsys, root)
    assert rc == 0 and "Zeta cells" in out
    # a bad file with such a name is named, its odd bytes escaped, and nothing crashes printing it
    (spaced / raw).write_bytes(b"garbage")
    rc, out, err = _info(capsys, root)
    assert rc == 2
    assert f"{spaced}/caf\\xe9 \\xff.png: corrupt image" in out
    (spaced / "cell one.png").write_bytes(b"")
    assert f"{spaced / 'cell one.png'}: empty file" in _assert_reported(capsys, root, spaced / "cell one.png")
