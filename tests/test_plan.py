"""The run plan (cervixlib.plan) and its parallel training on Ray (cervixlib.parallel).

The plan is checked against the chapters themselves in test_book_chapters (the smoke book
trains its plan first, and no chapter trains anything more) and test_paper_profile; here:
what it lists per profile, on a fresh clone without data, and the engine on Ray with
logical GPUs: fractional GPUs, loopback-only servers, a failed run and a killed worker
that do not stop the others, resuming, and two plans on one store.
"""

from __future__ import annotations

import collections
import importlib.util
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cervixlib.book import BookError, load_manifest
from cervixlib.config import make_config
from cervixlib.book.plan import book_plan
from cervixlib.plan import plan_runs

REPO = Path(__file__).resolve().parents[1]
BOOK = dict(book_dir=REPO / "book", notebooks_dir=REPO / "notebooks")


def _counts(plan):
    return collections.Counter((r.config.data.split, r.config.weights is not None) for r in plan.runs)


def test_the_paper_profile_plans_72_runs_without_generating_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CERVIX_DATA_HOME", str(tmp_path / "empty-home"))
    plan = book_plan("paper", runs_dir=tmp_path / "runs", generate=False, **BOOK)
    assert not (tmp_path / "empty-home").exists()  # looked, generated nothing
    assert plan.data_root is None and all(r.done is None for r in plan.runs)
    assert len(plan.runs) == len(set(plan.configs())) == 52 + 20
    # released protocol: 4 designs x 2 subsets on the released split (3 of 4 with ImageNet weights);
    # ours: 4 models x 2 subsets x 5 folds from scratch (the API's weights=None; the command line
    # gives the paper profile ImageNet weights); leakage: the 4 released recipes on isolated cells
    # under our split (fold 1), beside their released-split runs above; chapter 6: 4 graph models
    # x 5 folds on multi-cell images, from scratch, the one on CNN features reading chapter 4's
    # isolated-cell DenseNet-121 of its fold (planned once, before it)
    assert _counts(plan) == {("released", True): 6, ("released", False): 2, ("group", False): 40 + 1 + 20,
                             ("group", True): 3}
    graphs = collections.Counter(r.config.model for r in plan.runs if r.config.model.startswith("cell_graph"))
    assert graphs == {"cell_graph_gat": 5, "cell_graph_gin": 5, "cell_graph_gat_no_edges": 5, "cell_graph_gat_cnn": 5}
    position = {r.config: i for i, r in enumerate(plan.runs)}
    for r in plan.runs:
        if r.config.model == "cell_graph_gat_cnn":
            enc = r.config.cell_encoder
            assert (enc.model, enc.data.subset, enc.data.fold) == ("densenet121", "isolated", r.config.data.fold)
            assert position[enc] < position[r.config]
    models = collections.Counter(r.config.model for r in plan.runs if r.config.data.split == "released")
    assert models == {"resnet50": 2, "densenet121": 2, "ran92": 2, "rcan_densenet121_released": 2}
    assert all(r.config.epochs == (100 if r.config.model.startswith("cell_graph") else 50)  # Profile.graph_epochs
               and r.config.data.image_size == 224 and r.config.batch_size == 16 for r in plan.runs)
    assert {c for r in plan.runs for c in r.chapters} == {"02_baselines", "03_attention_models",
                                                          "04_multicell_vs_isolated", "05_explainability",
                                                          "06_cell_graphs", "00_claims"}
    text = plan.text()
    assert "72 runs" in text and "not generated yet" in text


def test_the_plan_follows_parameters_and_chapters(tmp_path, monkeypatch):
    monkeypatch.setenv("CERVIX_DATA_HOME", str(tmp_path / "empty-home"))
    plan = book_plan("smoke", runs_dir=tmp_path, params={"models": ["resnet50"]}, only=["03"],
                     generate=False, **BOOK)
    # chapter 3 alone, one model: its 2 folds on multi-cell images (the side protocol is for
    # rcan_densenet121, which is not among the models)
    assert sorted(r.label for r in plan.runs) == ["resnet50-multi-f1of2-64px-e1", "resnet50-multi-f2of2-64px-e1"]
    assert all(r.chapters == ("03_attention_models",) for r in plan.runs)


def test_plan_lists_store_status_images_and_estimate(tmp_path, synth_root):
    configs = [make_config("resnet50", profile="smoke", root=str(synth_root), folds=2, fold=f) for f in (0, 1)]
    plan = plan_runs(configs, runs_dir=tmp_path)
    assert [r.done for r in plan.runs] == [False, False]
    assert all(r.images > 0 and r.work == r.images for r in plan.runs)
    from cervixlib.train import fit

    fit(configs[0], runs_dir=tmp_path, progress=False)
    again = plan_runs(configs, runs_dir=tmp_path)
    assert [r.done for r in again.runs] == [True, False] and again.todo == [again.runs[1]]
    from cervixlib.plan import store_throughput

    rates = store_throughput(tmp_path)
    assert len(rates) == 1  # resnet50 at 64 px on this CPU, measured by the run in the store
    assert again.estimate(again.runs[1], rates) == pytest.approx(again.runs[1].work / next(iter(rates.values())))
    assert "Estimated time on" in again.text(rates)


def test_manifest_refuses_an_unknown_run_need(tmp_path):
    path = tmp_path / "manifest.yml"
    path.write_text("notebooks:\n  - name: 02_baselines\n    runs: [main, everything]\n")
    with pytest.raises(BookError, match="runs must be a list of main, side, folds, leakage"):
        load_manifest(path)
    path.write_text("notebooks:\n  - name: 02_baselines\n    runs: [folds@tiles]\n")
    with pytest.raises(BookError, match="@SUBSET"):
        load_manifest(path)
    path.write_text("notebooks:\n  - name: 02_baselines\n    runs: [leakage@multi]\n")
    with pytest.raises(BookError, match="@SUBSET"):  # the leakage pair is of isolated cells, always
        load_manifest(path)


def test_the_plan_refuses_a_parameter_no_chapter_takes(tmp_path):
    with pytest.raises(BookError, match="epoch.*not in the parameters cell"):
        book_plan("smoke", runs_dir=tmp_path, params={"epoch": 2}, generate=False, **BOOK)


def test_cervix_plan_prints_the_paper_plan_quickly(tmp_path):
    env = {**os.environ, "CERVIX_DATA_HOME": str(tmp_path / "home")}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cervixlib.cli", "plan", "--profile", "paper", "--synthetic",
                          "--weights", "none", "--runs", str(tmp_path / "runs")], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True)
    seconds = time.perf_counter() - t
    assert "Run plan of the paper profile: 72 runs, 0 in the store" in out.stdout
    assert out.stdout.count("rcan_densenet121_released-") == 3  # multi, isolated, leakage
    for graph in ("cell_graph_gat-", "cell_graph_gin-", "cell_graph_gat_no_edges-", "cell_graph_gat_cnn-"):  # 5 folds each
        assert out.stdout.count(graph) == 5, graph
    assert "papermill" not in out.stderr
    print(f"cervix plan --profile paper: {seconds:.1f} s")  # the target is 10 s; not asserted (shared CPUs)


# ---------------------------------------------------------------- parallel training on Ray
# Ray is not imported here: cervixlib.parallel imports it first, after asking it to bind loopback.
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is the `ray` extra; make installs it")


def _listening_addresses() -> set[str]:
    import psutil

    mine = {p.pid for p in psutil.Process().children(recursive=True)}
    return {c.laddr.ip for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in mine}


@needs_ray
def test_runs_share_logical_gpus_bind_loopback_and_a_failure_stays_alone(tmp_path, synth_root, monkeypatch):
    from cervixlib.parallel import train_plan

    configs = [make_config("resnet50", profile="smoke", root=str(synth_root), folds=2, fold=f) for f in (0, 1)]
    bad = make_config("densenet121", profile="smoke", root=str(synth_root), folds=2,
                      weights=str(tmp_path / "densenet121-missing.pth"))  # fails at once, no download
    seen: dict[str, set] = {"addresses": set(), "running": set()}

    def on_report(state):
        seen["addresses"] |= _listening_addresses()
        running = {k for k, v in state.items() if v.get("pid") and (v.get("epoch") or 0) < v.get("epochs", 1)}
        seen["running"] = max(seen["running"], running, key=len)

    lines = []
    result = train_plan(configs + [bad], runs_dir=tmp_path / "runs", jobs=2, runs_per_gpu=2, num_cpus=2,
                        num_gpus=1, write=lines.append, on_report=on_report)
    assert "gpus 0.5" in lines[0] and "127.0.0.1" in lines[0]  # two runs a (logical) GPU
    assert len(seen["running"]) >= 2  # and they ran at the same time
    assert sorted(result.trained) == sorted(p.parent.name for p in (tmp_path / "runs").glob("*/config.json"))
    assert len(result.trained) == 2
    [(failed, error)] = result.failed
    assert failed.config == bad and "WeightsNotFoundError" in error and "densenet121" in error
    assert "model=densenet121" in result.failure_text()
    assert seen["addresses"] and seen["addresses"] <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
    assert "FAILED" in "\n".join(lines) and "1 failed" in lines[-1]


@needs_ray
def test_a_killed_worker_fails_its_run_alone_and_a_rerun_resumes_it(tmp_path, synth_root):
    from cervixlib.parallel import train_plan

    slow = make_config("resnet50", profile="smoke", root=str(synth_root), subset="isolated", epochs=6)
    quick = make_config("densenet121", profile="smoke", root=str(synth_root))
    plan = plan_runs([slow, quick], runs_dir=tmp_path)
    label = plan.runs[0].label
    killed = []

    def on_report(state):
        s = state.get(label, {})
        if not killed and (s.get("epoch") or 0) >= 1 and s["epoch"] < s["epochs"]:
            os.kill(s["pid"], signal.SIGKILL)  # the run's worker process, mid-run
            killed.append(s["epoch"])

    result = train_plan(plan, jobs=2, checkpoint_every=0, write=lambda line: None, on_report=on_report)
    assert killed, "the slow run finished before it could be killed"
    assert [r.config for r, _ in result.failed] == [slow]
    assert "worker process died" in result.failed[0][1]
    assert result.trained == [plan.runs[1].name]  # the other run finished
    assert (tmp_path / f"{label}.partial" / "last.pt").is_file()  # checkpoint of the killed run

    resumed = []
    again = train_plan(plan_runs([slow, quick], runs_dir=tmp_path), jobs=2, write=lambda line: None,
                       on_report=lambda st: resumed.append(st.get(label, {}).get("resumed_at")))
    assert again.ok and again.trained == [label] and again.skipped == 1
    assert max(r or 0 for r in resumed) >= killed[0]  # continued from its checkpoint, not from epoch 0


def _plan_in_process(runs_dir: str, root: str, queue) -> None:
    from cervixlib.parallel import train_plan

    configs = [make_config(m, profile="smoke", root=root) for m in ("resnet50", "densenet121")]
    result = train_plan(configs, runs_dir=runs_dir, jobs=1, write=lambda line: None)
    queue.put((result.trained, result.loaded, [e for _, e in result.failed]))


@needs_ray
def test_two_plans_on_one_store_train_each_run_once(tmp_path, synth_root):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_plan_in_process, args=(str(tmp_path), str(synth_root), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    trained = [name for t, _, _ in outcomes for name in t]
    assert all(not errors for _, _, errors in outcomes)
    # each run trained by one process; the other found it finished (in its plan, or under the lock)
    assert len(trained) == len(set(trained)) == 2


@needs_ray
def test_a_local_instance_that_would_not_bind_loopback_is_refused(monkeypatch):
    from cervixlib import parallel

    ray = parallel._import_ray(local=True)
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "192.0.2.7")  # as if imported too early
    with pytest.raises(parallel.RayUnavailable, match="would listen on 192.0.2.7, not on 127.0.0.1"):
        parallel.start_ray()
    assert not ray.is_initialized()
