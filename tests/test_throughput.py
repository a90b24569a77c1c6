"""``cervix plan`` gives a time with an empty store (issue 26): measured on this device where
the store has runs of the same model and size, else projected from a table of measured GPU
throughputs (the project's H200 figures, or the user's own from benchmarks/bench_throughput.py),
labelled as a projection for that GPU, not this machine."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from cervixlib.cli import main
from cervixlib.config import make_config
from cervixlib.plan import PlannedRun, RunPlan, _precision, _throughput_key
from cervixlib.runtime import device_name
from cervixlib.throughput import H200, load_throughput

REPO = Path(__file__).resolve().parents[1]


def _table(path: Path, **changes) -> Path:
    payload = {**H200.to_dict(), "device": "Test GPU", "date": "2026-12-07", "source": "",
               "models": {m: {"images_per_s": {"any": 100.0}, "memory_mib": 2048.0, "projected": ""}
                          for m in H200.models}, **changes}
    path.write_text(json.dumps(payload))
    return path


def test_the_h200_table_covers_the_paper_plan_and_labels_its_projections():
    from cervixlib.config import MODEL_NAMES

    assert set(H200.models) == set(MODEL_NAMES)
    assert H200.rate("resnet50", 224, 16, "isolated") == 633 and H200.rate("resnet50", 224, 16, "multi") == 430
    assert H200.rate("resnet50", 64, 16, "multi") is None  # another size is not projected
    measured = {m for m, t in H200.models.items() if not t.projected}
    assert measured == {"resnet50", "ran_resnet50", "rcan_densenet121"}
    assert (H200.runs_at_once, H200.speedup) == (4, 3.0)
    assert H200.label() == "projected from NVIDIA H200 measurements (2026-12, batch 16, 224 px)"


def test_cervix_plan_paper_prints_a_labelled_time_with_an_empty_store(synth_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # outside the clone: the book is found there
    assert main(["plan", "--profile", "paper", "--data", str(synth_root), "--runs", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "0 in the store" in out and "(NVIDIA H200)" in out
    here = device_name()
    line = next(x for x in out.splitlines() if x.startswith("Projected time"))
    assert line.startswith(f"Projected time for one NVIDIA H200 GPU, not this machine ({here}): ")
    assert "with 4 runs sharing the GPU (3.0x one run); on N such GPUs" in line
    assert "projected from NVIDIA H200 measurements (2026-12, batch 16, 224 px)" in out
    assert "densenet121: rcan_densenet121's 197 img/s times their GMACs" in out
    assert "GPU memory a run (batch 16, 224 px): not measured" in out
    todo = [x.split() for x in out.splitlines() if x.startswith("  todo")]
    cnn = [x for x in todo if x[1].rsplit("-", 6)[0] in H200.models]  # the four CNNs and the released designs
    assert cnn and all(x[-2:] == ["(NVIDIA", "H200)"] for x in cnn), cnn  # every one has a projected time

    table = _table(tmp_path / "mine.json")  # the user's own card
    assert main(["plan", "--profile", "paper", "--data", str(synth_root), "--runs", str(tmp_path / "runs"),
                 "--throughput", str(table)]) == 0
    out = capsys.readouterr().out
    assert "Projected time for one Test GPU GPU, not this machine" in out
    assert "projected from Test GPU measurements (2026-12-07, batch 16, 224 px)" in out
    assert "GPU memory a run (batch 16, 224 px): densenet121 2,048 MiB" in out


def test_a_bad_throughput_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "t.json"
    bad.write_text("{}")
    assert main(["plan", "--profile", "smoke", "--runs", str(tmp_path), "--throughput", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cervix plan: error: {bad}: not a throughput table")
    with pytest.raises(ValueError, match="positive"):
        load_throughput(_table(tmp_path / "zero.json", models={"resnet50": {"images_per_s": {"any": 0}}}))


def test_the_store_measurement_wins_and_the_rest_is_projected():
    measured = make_config("resnet50", profile="paper", subset="isolated")
    other = make_config("densenet121", profile="paper", subset="isolated")
    runs = (PlannedRun(measured, ("03",), name="a", images=1000, done=False),
            PlannedRun(other, ("03",), name="b", images=1000, done=False),
            PlannedRun(make_config("resnet50", profile="smoke"), ("03",), name="c", images=10, done=False))
    plan = RunPlan("paper", runs, Path("runs"), data_root=Path("data"), synthetic=False)
    store = {_throughput_key(measured, device_name(), _precision(measured)): 50.0}
    text = plan.text(store)
    assert f"Estimated time on {device_name()} (measured on this device" in text
    assert "17 min" in text  # 1000 x 50 epochs at 50 img/s: the store's rate
    assert "Projected time for one NVIDIA H200 GPU" in text
    assert "No estimate for 1 of the 3 runs to train" in text and "batch 16 at 224 px" in text


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_bench_throughput_writes_a_table_the_plan_reads(tmp_path, capsys):
    """benchmarks/bench_throughput.py at toy sizes on the CPU: one model, and one worker of
    --runs-at-once in this process (the processes at once cost a torch import each)."""
    spec = importlib.util.spec_from_file_location("bench_throughput", REPO / "benchmarks" / "bench_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "t.json"
    assert bench.main(["--out", str(out), "--models", "resnet50", "--image-size", "64", "--batch-size", "2",
                       "--steps", "1", "--warmup", "0", "--runs-at-once", "1"]) == 0
    table = load_throughput(out)
    assert table.device == device_name() and (table.batch_size, table.image_size, table.runs_at_once) == (2, 64, 1)
    assert table.rate("resnet50", 64, 2, "multi") > 0 and table.speedup == 1.0
    assert table.models["resnet50"].memory_mib is None and not table.gpu  # no GPU: no memory measured
    capsys.readouterr()
    assert bench.main(["--worker", "resnet50", "--image-size", "64", "--batch-size", "2", "--steps", "1",
                       "--warmup", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["images_per_s"] > 0


def test_the_default_profile_on_a_cpu_is_projected_from_the_cpu_table():
    from cervixlib.throughput import CPU_2CORE, best_table

    runs = tuple(PlannedRun(make_config(m, profile="default"), ("03",), name=m, images=100, done=False)
                 for m in ("resnet50", "densenet121"))
    assert best_table([(r.config.model, 64, 16, "multi") for r in runs]) is CPU_2CORE
    text = RunPlan("default", runs, Path("runs"), data_root=Path("data"), synthetic=True).text({})
    assert f"Projected time for one 2-core Intel Xeon (fp32, AVX2 cap), not this machine ({device_name()}): " in text
    assert "with 2 runs at once (1.18x one run)" in text and "GPU" not in text  # no GPUs, no GPU memory
    assert "densenet121: resnet50's rate times their speeds at 128 px" in text
    assert "~28 s (2-core Intel Xeon (fp32, AVX2 cap))" in text  # resnet50: 100 x 8 epochs at 28.5 img/s
