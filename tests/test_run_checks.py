"""Checksums of finished runs (cervixlib.runs, cervixlib.storage, cervixlib.run_checks).

What a run records when it finishes is compared with hashlib's own digests of its files; five
kinds of damage are each found, named in one line and, through the plan, moved aside and
trained again while the other runs stay as they were; a run from before checksums is trusted
once; and a process checking the store while another finishes a run never sees a half-written
run as damaged.

Training is replaced here by a stand-in that writes a real run through the store (a resnet50
state_dict, predictions on the run's real split): what is tested is how the store and the plan
treat the files, which real training (tests/test_book_freshness.py, test_plan.py) does not change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest

from cervixlib import parallel
from cervixlib import runs as store
from cervixlib import storage
from cervixlib import train as train_mod
from cervixlib.config import make_config
from cervixlib.plan import plan_runs
from cervixlib.run_checks import repair, verify_run

SEEDS = range(6)


@pytest.fixture(scope="module")
def weights():
    """A real resnet50 state_dict (5 classes), so that a repaired run's checkpoint loads."""
    from cervixlib.models import create_model

    return create_model("resnet50", num_classes=5).state_dict()


def _stand_in(weights):
    def fake_train(config, data, key, part, final, *, on_epoch=None, **kwargs):
        if on_epoch is not None:
            on_epoch(0, 1, {"resumed_at": 0})
        store.save_best(part, weights)
        test = np.asarray(data.split.test)
        y = np.asarray([data.items[i].label for i in test])
        prob = np.random.default_rng(config.seed).dirichlet(np.ones(5), len(test)).astype(np.float32)
        if on_epoch is not None:
            on_epoch(1, 1, {"train_images_per_s": 1.0})
        return store.finish_run(part, final, config=config, key=key,
                                info={"data_root": str(data.root.resolve()), "classes": list(data.index.classes)},
                                metrics={"test": {"accuracy": float((prob.argmax(1) == y).mean())}},
                                history=[{"epoch": 1}], predictions={"test_index": test, "test_y": y, "test_prob": prob})
    return fake_train


@pytest.fixture
def store_of_six(tmp_path, synth_root, weights, monkeypatch):
    """Six finished runs (resnet50, smoke, seeds 0-5) in ``tmp_path/runs``: (configs, runs_dir)."""
    monkeypatch.setattr(train_mod, "_train", _stand_in(weights))
    configs = [make_config("resnet50", profile="smoke", root=str(synth_root), seed=s) for s in SEEDS]
    runs = tmp_path / "runs"
    for c in configs:
        train_mod.fit(c, runs_dir=runs, progress=False)
    return configs, runs


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _rot(path: Path) -> None:
    """One flipped byte that leaves the size and modification time alone, as a failing disk would."""
    st = path.stat()
    _flip(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _config_off_key(path: Path) -> None:
    payload = json.loads(path.read_text())
    payload["config"]["lr"] *= 10  # a setting the run's key was not computed from
    path.write_text(json.dumps(payload, indent=2))


#: (file, damage, found by the fast check (sizes and times), what load_run says (None: load_run
#: passes; loading the model fails))
DAMAGES = [
    ("best.pt", _rot, False, None),
    ("best.pt", _truncate, True, r"best\.pt: damaged \([\d,]+ bytes, [\d,]+ when the run finished\)"),
    ("predictions.npz", _flip, True, r"predictions\.npz: damaged \(its SHA-256 differs"),
    ("metrics.json", Path.unlink, True, r"metrics\.json: damaged \(missing\)"),
    ("config.json", _config_off_key, True, r"config\.json: damaged \(its settings no longer match the run's key"),
]


def test_finish_records_every_files_size_and_sha256(store_of_six):
    configs, runs = store_of_six
    run_dir = next(p for p in runs.iterdir() if p.is_dir())
    payload = json.loads((run_dir / "config.json").read_text())
    for name in ("best.pt", "predictions.npz", "metrics.json", "history.json"):
        assert payload["files"][name] == {"sha256": hashlib.sha256((run_dir / name).read_bytes()).hexdigest(),
                                          "size": os.path.getsize(run_dir / name),
                                          "mtime_ns": (run_dir / name).stat().st_mtime_ns}
    # config.json holds the hash of what it says, not of its bytes: re-indented it is the same run
    (run_dir / "config.json").write_text(json.dumps(payload, indent=4, sort_keys=False))
    assert verify_run(run_dir) is None and store.load_run(run_dir).checksums == payload["files"]
    # a file written since the run finished is hashed by the fast check too: a flipped byte is found
    _flip(run_dir / "best.pt")
    assert "best.pt: damaged (its SHA-256 differs" in str(verify_run(run_dir, full=False))
    with pytest.raises(store.RunDamaged, match=r"best\.pt: damaged \(its SHA-256 differs"):
        store.load_run(run_dir)


def test_five_damages_are_found_named_and_repaired_through_the_plan(store_of_six, weights, monkeypatch, caplog):
    configs, runs = store_of_six
    plan = plan_runs(configs, runs_dir=runs)
    assert all(r.done for r in plan.runs)
    names = [r.name for r in plan.runs]
    for name, (file, damage, by_size, load_error) in zip(names, DAMAGES):
        damage(runs / name / file)
    intact = runs / names[5]
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in intact.iterdir()}

    for name, (file, damage, by_size, load_error) in zip(names, DAMAGES):
        where = runs / name / file
        if load_error is None:  # the checkpoint: load_run reads it by size, loading the model hashes it
            with pytest.raises(store.RunDamaged) as err:
                store.load_run(runs / name).load_model()
        else:
            with pytest.raises(store.RunDamaged, match=load_error) as err:
                store.load_run(runs / name)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{where}: damaged")  # the run's folder, the file
        assert f"run {name} is not used" in message and "`cervix book` or `cervix train --plan`" in message

    fast = plan_runs(configs, runs_dir=runs, verify="size")
    assert [r.damage is not None for r in fast.runs] == [d[2] for d in DAMAGES] + [False]
    full = plan_runs(configs, runs_dir=runs)
    assert [r.done for r in full.runs] == [False] * 5 + [True]
    for r, (file, *_rest) in zip(full.runs, DAMAGES):
        assert r.damage.startswith(f"{runs / r.name / file}: damaged (")
    text = full.text()
    assert text.count("\n  damaged ") == 5 and f"  done    {names[5]}" in text

    # through the plan: each damaged run moved aside (one line each), trained again; the sixth untouched
    def no_ray(*args, **kwargs):
        raise parallel.RayUnavailable("not in this test")

    monkeypatch.setattr(parallel, "start_ray", no_ray)
    monkeypatch.setattr(train_mod, "_train", _stand_in(weights))
    caplog.set_level(logging.WARNING, logger="cervixlib")
    result = parallel.train_plan(full, without_ray="here", write=lambda line: None)
    assert result.ok and sorted(result.trained) == sorted(names[:5])
    aside = sorted((runs / store.DAMAGED_DIR).iterdir())
    assert [p.name.rsplit("-", 1)[0] for p in aside] == sorted(names[:5])  # <name>-<UTC time>
    for name, (file, *_rest) in zip(names, DAMAGES):
        assert caplog.text.count(f"{runs / name / file}: damaged (") == 1
        assert f"moved the run aside to {runs / store.DAMAGED_DIR / name}-" in caplog.text
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in intact.iterdir()} == before
    assert all(r.done for r in plan_runs(configs, runs_dir=runs).runs)
    store.load_run(runs / names[0]).load_model()  # the retrained checkpoint loads and checks


def test_a_run_from_before_checksums_is_trusted_once(store_of_six, caplog):
    configs, runs = store_of_six
    sound, broken = (runs / p.name for p in sorted(p for p in runs.iterdir() if p.is_dir())[:2])
    for run in (sound, broken):  # as the store wrote runs before checksums
        payload = json.loads((run / "config.json").read_text())
        del payload["files"], payload["config_sha256"]
        (run / "config.json").write_text(json.dumps(payload, indent=2, sort_keys=True))
    _truncate(broken / "best.pt")
    caplog.set_level(logging.INFO, logger="cervixlib")
    assert verify_run(sound, full=False) is None and "trusted once" not in caplog.text  # the fast check records nothing
    assert verify_run(sound) is None
    assert caplog.text.count("trusted once") == 1
    recorded = json.loads((sound / "config.json").read_text())["files"]
    assert recorded["best.pt"]["sha256"] == hashlib.sha256((sound / "best.pt").read_bytes()).hexdigest()
    assert verify_run(sound) is None and caplog.text.count("trusted once") == 1  # once
    _flip(sound / "predictions.npz")
    assert "predictions.npz: damaged" in str(verify_run(sound))  # from now on checked like a new run
    damage = verify_run(broken)  # unreadable: damage, and nothing recorded
    assert damage is not None and str(damage).startswith(f"{broken / 'best.pt'}: damaged (checkpoint is unreadable")
    assert "files" not in json.loads((broken / "config.json").read_text())
    assert repair(broken).parent == runs / store.DAMAGED_DIR and not broken.exists()


# ------------------------------------------------------------------ checking while a run finishes
def _watch(final: str, ready, stop, queue) -> None:
    """Check the run at ``final`` as fast as possible until told to stop: counts of what was seen."""
    final_path, seen = Path(final), {"absent": 0, "done": 0, "damaged": []}
    ready.set()
    i = 0
    while not stop.is_set() or i == 0:
        there = final_path.is_dir()
        damage = verify_run(final_path, full=True)  # without the lock, as `cervix plan` checks
        if damage is not None:
            seen["damaged"].append(str(damage))
        else:
            seen["done" if there else "absent"] += 1
        i += 1
    moved = repair(final_path)  # and under the run's lock, as the plan moves damaged runs aside
    if moved is not None:
        seen["damaged"].append(f"moved aside to {moved}")
    queue.put(seen)


def test_checking_while_another_process_finishes_a_run_sees_no_damage(tmp_path, monkeypatch):
    cfg = make_config("resnet50", profile="smoke", root=str(tmp_path))
    final = store.find_run(tmp_path / "runs", cfg, "0123456789abcdef")
    final.parent.mkdir()
    ctx = multiprocessing.get_context("spawn")
    ready, stop, queue = ctx.Event(), ctx.Event(), ctx.Queue()
    watcher = ctx.Process(target=_watch, args=(str(final), ready, stop, queue))
    watcher.start()
    try:
        assert ready.wait(60)
        real = storage.atomic_write_bytes

        def slow(path, data):  # each file of the finish takes a while: the watcher looks in between
            time.sleep(0.2)
            real(path, data)

        monkeypatch.setattr(storage, "atomic_write_bytes", slow)
        with store.run_lock(final):  # as fit finishes a run
            part, _ = store.start_partial(final)
            store.save_best(part, {"w": __import__("torch").zeros(1000)})
            store.finish_run(part, final, config=cfg, key="0123456789abcdef", info={"classes": ["a", "b"]},
                             metrics={"test": {}}, history=[{"epoch": 1}],
                             predictions={"test_y": np.arange(4), "test_prob": np.eye(4, 2)})
        time.sleep(0.5)
        stop.set()
        seen = queue.get(timeout=60)
    finally:
        stop.set()
        watcher.join(timeout=60)
        if watcher.is_alive():
            watcher.kill()
    assert seen["damaged"] == []
    assert seen["absent"] > 0 and seen["done"] > 0, seen  # it looked before and after the run appeared
