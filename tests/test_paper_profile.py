"""The paper profile end to end at toy size: `cervix book --profile paper` on a generated set.

Every path only the paper profile takes executes here: the run plan trained in parallel on
Ray before any chapter, the released designs from ImageNet weights (stand-in files:
torchvision's own state_dicts under torchvision's file names in a temporary torch hub cache,
so nothing is downloaded), our folds beside them, the leakage table, the released IG in
chapter 5 and the front page. Toy size: a generated set of 29 fields at 256 x 192 px, 64 px
inputs, one epoch, the smallest explanation settings, and 2 of our folds instead of the
profile's 5 (36 runs instead of 72: the fold count is a number, not a path of its own; the
72-run plan of the 5 folds is tests/test_plan.py's).
"""

from __future__ import annotations

import json
import time

import pytest
import torch
import torchvision

from cervixlib import book
from cervixlib.data import synthesize
from cervixlib.models.weights import imagenet_weight_files
from test_book import REPO, make_project

pytestmark = pytest.mark.slow

TOY = {"image_size": 64, "epochs": 1, "folds": 2, "explain_steps": 4, "explain_images": 2, "perturbation_steps": 2,
       "released_images": 1, "robustness_images": 1, "cascade_images": 1, "cascade_steps": 2, "convergence_images": 1}
#: The runs of the paper plan with 2 of our folds: 28 of the CNNs (8 under the released protocol, 16 fold
#: runs of ours on both subsets, 4 more for the leakage table) and chapter 6's 4 graph models x 2 folds
#: (the one on CNN features reads the isolated-cell DenseNet-121 fold runs already among the 16).
RUNS = 36


@pytest.fixture(scope="module")
def paper_book(tmp_path_factory):
    base = tmp_path_factory.mktemp("paperbook")
    data = synthesize(base / "toy-sipakmed", scale=0.03, seed=0, image_size=(256, 192), progress=False)
    root = make_project(base / "proj", toc=REPO / "_toc.yml", notebooks=REPO / "notebooks",
                        manifest=REPO / "book" / "manifest.yml")
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(base / "torch"))  # the Ray workers and the kernels inherit it
    mp.setattr(torch.hub, "_hub_dir", None)
    for arch, build in (("resnet50", torchvision.models.resnet50), ("densenet121", torchvision.models.densenet121)):
        _url, path = imagenet_weight_files(arch)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(build().state_dict(), path)  # a stand-in with torchvision's keys and file name
    mp.chdir(root)
    try:
        t = time.perf_counter()
        result = book.run_book("paper", data=data, runs_dir=str(root / "runs"), params=TOY)
        seconds = time.perf_counter() - t
    finally:
        mp.undo()
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    print(f"paper profile at toy size, {RUNS} runs and seven notebooks: {seconds:.0f} s ({parts})")
    return root, result


def _page(root, name):
    return (root / "book" / "_build" / "html" / f"{name}.html").read_text(encoding="utf-8")


def _runs(root):
    return [json.loads(p.read_text()) for p in (root / "runs").glob("*/config.json")]


def test_the_plan_trains_all_its_runs_and_the_chapters_train_none(paper_book):
    # the API's weights=None: ours from scratch
    root, result = paper_book
    assert len(result.executed) == 7 and result.html_dir is not None
    assert len(result.planned) == RUNS and result.unplanned == []
    assert len(_runs(root)) == RUNS


def test_released_designs_start_from_the_stand_in_imagenet_files(paper_book):
    root, _ = paper_book
    released = [r for r in _runs(root) if r["config"]["data"]["split"] == "released"]
    pretrained = {r["config"]["model"] for r in released if r["config"]["weights"] == "imagenet"}
    assert pretrained == {"resnet50", "densenet121", "rcan_densenet121_released"}
    assert all(r["info"]["weights_source"].endswith(".pth") for r in released if r["config"]["weights"])
    assert {r["config"]["model"] for r in released} >= {"ran92", "rcan_densenet121_released"}


def test_our_folds_beside_the_released_protocol(paper_book):
    root, _ = paper_book
    ours = ("resnet50", "densenet121", "ran_resnet50", "rcan_densenet121")
    folds = {(r["config"]["model"], r["config"]["data"]["subset"], r["config"]["data"]["fold"])
             for r in _runs(root) if r["config"]["data"]["folds"] == 2 and r["config"]["weights"] is None
             and r["config"]["model"] in ours}
    assert len(folds) == 4 * 2 * 2
    page = _page(root, "03_attention_models")
    assert "2 grouped folds" in page and "released code" in page


def test_leakage_table_released_ig_and_front_page(paper_book):
    import re

    root, _ = paper_book
    # rendered table cells, not the code that makes them (which the page keeps behind a toggle)
    assert "<th>test images with a sibling in training</th>" in _page(root, "04_multicell_vs_isolated")
    assert re.search(r"<td>IG \(released\)</td>", _page(root, "05_explainability"))
    verdicts = re.findall(r"<td><strong>([^<]+)</strong></td>", _page(root, "00_claims"))
    assert len(verdicts) == 6, verdicts  # claims 1 to 5 and 6 (chapter 6); the set is synthetic: each verdict says so
    assert all(v.startswith(("supported", "contradicted", "undecided at this sample size")) and "(not SIPaKMeD)" in v
               for v in verdicts), verdicts
