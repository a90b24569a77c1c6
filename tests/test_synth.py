"""The procedural SIPaKMeD-compatible generator: counts, layout, determinism, cache."""

from __future__ import annotations

import hashlib
import json
import threading

import numpy as np
import pytest

from cervixlib.cli import main as cli_main
from cervixlib.data import CLASSES, DataError, default_data_root, load_index, synthesize
from cervixlib.data import synth as synth_module
from cervixlib.data.synth import DEFAULT_IMAGE_SIZE, GENERATOR_VERSION, synthetic_counts
from cervixlib.facts import ISOLATED_COUNTS, MULTI_COUNTS, PAPER_TABLE1_ISOLATED

SMALL = (128, 96)


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _set_digest(root):
    """One SHA-256 over every file's relative path and SHA-256, in path order."""
    return hashlib.sha256("".join(f"{k} {v}\n" for k, v in sorted(_digest(root).items())).encode()).hexdigest()


# The output of synthesize(scale=0.01, seed=0, image_size=(128, 96)): 210 files. Any change
# to the bytes for a seed must bump GENERATOR_VERSION (it names the cached sets) and re-pin.
PINNED_VERSION = "2"
PINNED_SET_SHA256 = "f0facf7fe50ceab2e72e56b013b74ef9ce5a5537989957604770a355506dc544"


def test_counts_follow_sipakmed():
    multi, isolated = synthetic_counts(1.0)
    assert multi == MULTI_COUNTS and isolated == ISOLATED_COUNTS
    assert list(multi.values()) == [223, 238, 271, 108, 126] and sum(multi.values()) == 966
    assert list(isolated.values()) == [813, 825, 793, 787, 831] and sum(isolated.values()) == 4049
    # the paper's Table I prints 813 Superficial-Intermediate cells (a typo); nothing else differs
    assert {c: n for c, n in PAPER_TABLE1_ISOLATED.items() if n != isolated[c]} == {"Superficial-Intermediate": 813}
    assert sum(PAPER_TABLE1_ISOLATED.values()) == 4031
    multi, isolated = synthetic_counts(0.1)
    assert multi == {c: round(n * 0.1) for c, n in MULTI_COUNTS.items()}
    assert isolated == {c: round(n * 0.1) for c, n in ISOLATED_COUNTS.items()}
    assert synthetic_counts(1e-4) == ({c: 1 for c in CLASSES}, {c: 1 for c in CLASSES})
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale"):
            synthetic_counts(bad)


def test_layout_marker_and_file_names(synth_root):
    marker = json.loads((synth_root / "SYNTHETIC.json").read_text())
    assert marker["generator"] == "cervixlib.data.synth" and marker["version"] == GENERATOR_VERSION
    assert marker["synthetic"] is True and marker["seed"] == 0 and marker["image_size"] == [256, 192]
    multi, isolated = synthetic_counts(marker["scale"])
    assert marker["counts"] == {"multi": multi, "isolated": isolated}
    for cls in CLASSES:
        folder = synth_root / f"im_{cls}"
        fields = sorted(p.name for p in folder.glob("*.bmp"))
        assert fields == [f"{n:03d}.bmp" for n in range(1, multi[cls] + 1)]
        crops = sorted((folder / "CROPPED").glob("*.bmp"))
        assert len(crops) == isolated[cls]
        for crop in crops:
            source, cell = crop.stem.split("_")
            assert (folder / f"{source}.bmp").is_file()
            for name in (f"{source}_cyt{cell}.dat", f"{source}_nuc{cell}.dat"):
                assert (folder / name).is_file()
            for name in (f"{crop.stem}_cyt.dat", f"{crop.stem}_nuc.dat"):
                assert (folder / "CROPPED" / name).is_file()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = synthesize(tmp_path / "a", scale=0.005, seed=3, image_size=SMALL, progress=False)
    b = synthesize(tmp_path / "b", scale=0.005, seed=3, image_size=SMALL, progress=False)
    c = synthesize(tmp_path / "c", scale=0.005, seed=4, image_size=SMALL, progress=False)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db
    assert set(da) == set(dc)
    differing = [k for k in da if k.endswith(".bmp") and da[k] != dc[k]]
    assert len(differing) == sum(1 for k in da if k.endswith(".bmp"))


def test_output_is_pinned_for_the_generator_version(tmp_path):
    root = synthesize(tmp_path / "pin", scale=0.01, seed=0, image_size=SMALL, workers=1, progress=False)
    assert GENERATOR_VERSION == PINNED_VERSION, "GENERATOR_VERSION changed: re-pin PINNED_SET_SHA256"
    assert len(_digest(root)) == 210
    assert _set_digest(root) == PINNED_SET_SHA256, (
        "the generator's output changed for a fixed seed: bump GENERATOR_VERSION and re-pin")


def test_worker_processes_do_not_change_the_bytes(tmp_path):
    serial = synthesize(tmp_path / "serial", scale=0.03, seed=1, image_size=SMALL, workers=1, progress=False)
    parallel = synthesize(tmp_path / "parallel", scale=0.03, seed=1, image_size=SMALL, workers=2, progress=False)
    assert _digest(serial) == _digest(parallel)


def test_image_size_parameter_and_default(tmp_path):
    root = synthesize(tmp_path / "d", scale=1e-4, seed=0, progress=False)
    index = load_index(root)
    assert {it.size for it in index.multi} == {DEFAULT_IMAGE_SIZE}
    assert DEFAULT_IMAGE_SIZE[0] * DEFAULT_IMAGE_SIZE[1] <= 2048 * 1536 / 8  # well below SIPaKMeD's
    with pytest.raises(DataError, match="too small"):
        synthesize(tmp_path / "tiny", scale=1e-4, image_size=(64, 48))


def test_refuses_a_non_empty_output_folder(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DataError) as err:
        synthesize(tmp_path / "full", scale=1e-4)
    assert str(err.value).startswith(f"{tmp_path / 'full'}: already exists")


def _polygon_area(p):
    x, y = p[:, 0].astype(np.float64), p[:, 1].astype(np.float64)
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_cells_follow_the_cytology_cues(synth_index):
    """Per class: cell size and nucleus-to-cytoplasm ratio order as in DATA.md."""
    area, nc = {}, {}
    for item in synth_index.isolated:
        cell = item.cells[0]
        a_cell, a_nuc = _polygon_area(cell.cytoplasm), _polygon_area(cell.nucleus)
        area.setdefault(item.label, []).append(a_cell)
        nc.setdefault(item.label, []).append(a_nuc / a_cell)
    med_area = {CLASSES[k]: np.median(v) for k, v in area.items()}
    med_nc = {CLASSES[k]: np.median(v) for k, v in nc.items()}
    assert med_area["Superficial-Intermediate"] > med_area["Metaplastic"] > med_area["Dyskeratotic"]
    assert med_area["Koilocytotic"] > med_area["Parabasal"]
    assert max(med_nc, key=med_nc.get) == "Parabasal"
    assert min(med_nc, key=med_nc.get) == "Superficial-Intermediate"


def test_default_data_root_generates_once_even_when_raced(tmp_path, monkeypatch):
    monkeypatch.setenv("CERVIX_DATA_HOME", str(tmp_path / "cache"))
    calls = []
    real = synth_module.synthesize

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(synth_module, "synthesize", counting)
    results, errors = [], []

    def ask():
        try:
            results.append(default_data_root(scale=1e-4, seed=5, image_size=SMALL))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1 and len(calls) == 1
    root = results[0]
    assert root.parent == tmp_path / "cache"
    assert root.name == f"sipakmed-synth-v{GENERATOR_VERSION}-scale0.0001-seed5-128x96"
    assert load_index(root).synthetic
    assert [p.name for p in root.parent.iterdir() if not p.name.endswith(".lock")] == [root.name]
    assert default_data_root(scale=1e-4, seed=5, image_size=SMALL) == root and len(calls) == 1


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["synth", str(out), "--scale", "0.0001", "--seed", "2", "--image-size", "128x96"]) == 0
    text = capsys.readouterr().out
    assert "Synthetic    YES" in text and "total" in text
    assert json.loads((out / "SYNTHETIC.json").read_text())["seed"] == 2
    assert cli_main(["synth", str(out), "--scale", "0.0001"]) == 2
    assert "already exists" in capsys.readouterr().err
