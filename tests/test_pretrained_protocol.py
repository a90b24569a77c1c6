"""Our protocol from ImageNet weights: ``Study(weights="imagenet")``, ``cervix book --weights imagenet``.

The weights reach every configuration of our protocol (main, folds, side and leakage runs
where they are ours) and no configuration of the released protocol, which keeps the
released code's rule; each page's settings line names the torchvision weights; a run
trained at the smoke profile starts from the files in the torch hub cache. Stand-in files
(torchvision's own state_dicts under torchvision's file names, in a temporary
``$TORCH_HOME``) replace the real ones, and nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision

from cervixlib.config import IMAGENET_BACKBONES, IMAGENET_WEIGHTS, RUN_NEEDS
from cervixlib.study import Study

REPO = Path(__file__).resolve().parents[1]
OURS = ("resnet50", "densenet121", "ran_resnet50", "rcan_densenet121")  # the paper's four, our designs
IMAGENET_TEXT = ("ImageNet weights in the backbones, torchvision's ResNet50_Weights.IMAGENET1K_V1 for ResNet-50 "
                 "(IMAGENET1K_V2 where only that file is in the torch hub cache) and "
                 "DenseNet121_Weights.IMAGENET1K_V1 for DenseNet-121, with attention layers and classifier heads "
                 "trained from scratch")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A torch hub cache holding stand-ins for torchvision's IMAGENET1K_V1 files (seeded), as
    ``$TORCH_HOME``; any attempt to download fails the test. Yields ``{backbone: (path, state)}``."""
    from cervixlib.models.weights import imagenet_weight_files

    base = tmp_path_factory.mktemp("torch")
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(base))
    mp.setattr(torch.hub, "_hub_dir", None)  # as if torch.hub.set_dir was never called

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    mp.setattr(torch.hub, "load_state_dict_from_url", refuse)
    mp.setattr(torch.hub, "download_url_to_file", refuse)
    files = {}
    for seed, (arch, build) in enumerate((("resnet50", torchvision.models.resnet50),
                                          ("densenet121", torchvision.models.densenet121))):
        torch.manual_seed(100 + seed)
        state = build().state_dict()
        _url, path = imagenet_weight_files(arch)[0]  # IMAGENET1K_V1's file name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        files[arch] = (path, state)
    yield files
    mp.undo()


# ----------------------------------------------------------------------------- configurations
def _protocol_of_needs(profile: str) -> dict[str, str]:
    """Which protocol each group of runs follows: main and leakage the profile's, side the
    other, folds always ours."""
    main = "released" if profile == "paper" else "ours"
    side = "ours" if main == "released" else "released"
    return {"main": main, "side": side, "folds": "ours", "leakage": main}


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_weights_reach_every_config_of_our_protocol_and_none_of_the_released(profile):
    scratch, pretrained = Study(profile=profile), Study(profile=profile, weights="imagenet")
    protocols = _protocol_of_needs(profile)
    seen = set()
    for need in RUN_NEEDS:
        for subset in ("multi", "isolated"):
            before = scratch.needed_configs(f"{need}@{subset}", OURS)
            after = pretrained.needed_configs(f"{need}@{subset}", OURS)
            assert len(before) == len(after) > 0
            for a, b in zip(before, after):
                if protocols[need] == "ours":
                    assert a.weights is None and b == a.replace(weights="imagenet"), (need, a.model)
                else:  # the released code's rule, whatever the study's weights
                    assert b == a, (need, a.model)
                seen.add((protocols[need], b.weights))
    expected = {("ours", "imagenet"), ("released", None)}
    if profile == "paper":  # the released designs from ImageNet where the released code did (not ran92)
        expected.add(("released", "imagenet"))
    assert seen == expected
    # the run key hashes the whole config: the same recipe from ImageNet is another run
    from cervixlib.runs import run_key

    assert (run_key(scratch.config("resnet50", protocol="ours"), "f" * 16)
            != run_key(pretrained.config("resnet50", protocol="ours"), "f" * 16))


def test_the_weights_value_is_normalised_and_checked(tmp_path, monkeypatch):
    assert Study(weights="ImageNet").weights == "imagenet"
    assert Study().config("resnet50").weights is None  # from scratch, as before
    (tmp_path / "w").mkdir()
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "w" / "mine.pth")
    monkeypatch.chdir(tmp_path / "w")
    # a file is named by its absolute path: a notebook (run in notebooks/) and the run plan agree
    assert Study(weights="mine.pth").config("resnet50").weights == str(tmp_path / "w" / "mine.pth")
    assert Study(weights="../w/mine.pth").weights == str(tmp_path / "w" / "mine.pth")
    with pytest.raises(ValueError, match=r"weights='nowhere.pth': no such file"):
        Study(weights="nowhere.pth")
    # Attention-92 has no ImageNet weights: said at once, not after the plan started training
    with pytest.raises(ValueError, match=r"'ran92' has no backbone with torchvision ImageNet weights"):
        Study(weights="imagenet").config("ran92")
    assert Study(profile="paper", weights="imagenet").config("ran_resnet50").model == "ran92"  # released: its rule


def test_imagenet_backbones_cover_the_registry():
    """Every registered model but Attention-92 takes ImageNet weights, into one of two backbones."""
    from cervixlib.models import list_models
    from cervixlib.models.weights import _IMAGENET

    assert set(list_models()) - set(IMAGENET_BACKBONES) == {"ran92"}
    assert set(IMAGENET_BACKBONES.values()) == set(IMAGENET_WEIGHTS) == set(_IMAGENET)
    assert {a: tuple(str(w) for w in ws) for a, ws in _IMAGENET.items()} == IMAGENET_WEIGHTS


@pytest.mark.parametrize("model", OURS)
def test_each_of_our_models_takes_the_imagenet_backbone_and_keeps_its_new_parts_fresh(model, hub):
    """``weights="imagenet"``: the backbone equals the cached file; the attention layers (RAN's
    attention modules, RCAN's channel attention) and the classifier head are as a fresh build."""
    from cervixlib.models import create_model

    path, state = hub[IMAGENET_BACKBONES[model]]
    torch.manual_seed(7)
    net = create_model(model, num_classes=5, weights="imagenet")
    torch.manual_seed(7)
    fresh = create_model(model, num_classes=5).state_dict()
    own, head = net.state_dict(), net._head_name + "."
    backbone = [k for k in own if not k.startswith(("attn", head))]
    new = [k for k in own if k not in backbone]
    assert net.weights_source == str(path)
    assert all(torch.equal(own[k], state[k]) for k in backbone)
    assert all(torch.equal(own[k], fresh[k]) for k in new)
    assert any(k.startswith("attn") for k in new) == (model in ("ran_resnet50", "rcan_densenet121"))


# ----------------------------------------------------------------------------- pages
def test_the_settings_line_names_the_weights_of_each_protocol(synth_root, tmp_path):
    from cervixlib.display import _settings_html, study_statement

    scratch = study_statement(Study(profile="smoke", data_root=str(synth_root)))
    assert ("main tables: our protocol, trained from scratch; beside them, the released code's protocol for "
            "RCAN-DenseNet-121, trained from scratch") in scratch
    pretrained = study_statement(Study(profile="smoke", data_root=str(synth_root), weights="imagenet"))
    assert (f"main tables: our protocol, {IMAGENET_TEXT}; beside them, the released code's protocol for "
            "RCAN-DenseNet-121, trained from scratch") in pretrained
    paper = _settings_html(Study(profile="paper", weights="imagenet"))
    assert ("main tables: the released code's protocol, ImageNet weights where the released code used them; "
            f"beside them, our protocol for ResNet-50, DenseNet-121, RAN-ResNet-50, RCAN-DenseNet-121, {IMAGENET_TEXT}"
            ) in paper
    assert _settings_html(Study(profile="paper")).endswith("RCAN-DenseNet-121, trained from scratch")
    path = tmp_path / "private" / "my-backbone.pth"
    path.parent.mkdir()
    torch.save({}, path)
    own = _settings_html(Study(profile="smoke", weights=str(path)))
    assert ("our protocol, backbone weights from the file my-backbone.pth, with attention layers and classifier "
            "heads trained from scratch") in own
    assert str(path.parent) not in own  # a published page: the file's name, never its path


# ----------------------------------------------------------------------------- a run
def test_a_smoke_run_starts_from_the_cached_imagenet_file(synth_root, tmp_path, hub, one_thread):
    """The run's config and info record the weights; its trained backbone is one epoch of small
    Adam steps from the stand-in file, far closer to it than a fresh initialisation is."""
    from cervixlib.report import format_run

    path, state = hub["resnet50"]
    study = Study(profile="smoke", data_root=str(synth_root), weights="imagenet", runs_dir=str(tmp_path))
    run = study.run("resnet50")
    assert run.config.weights == "imagenet" and run.info["weights_source"] == str(path)
    saved = json.loads((run.dir / "config.json").read_text())
    assert saved["config"]["weights"] == "imagenet" and saved["info"]["weights_source"] == str(path)
    assert "weights ImageNet" in format_run(run)
    trained = run.load_model().state_dict()["conv1.weight"]
    torch.manual_seed(0)
    fresh = torchvision.models.resnet50().state_dict()["conv1.weight"]
    moved, apart = (trained - state["conv1.weight"]).norm(), (fresh - state["conv1.weight"]).norm()
    assert moved < 0.2 * apart, (float(moved), float(apart))
    # from scratch is the same recipe under another key: another run in the store
    from cervixlib.runs import run_key

    scratch = Study(profile="smoke", data_root=str(synth_root), runs_dir=str(tmp_path)).config("resnet50")
    assert scratch == run.config.replace(weights=None)
    assert run.key == run_key(run.config, study.index.fingerprint()) != run_key(scratch, study.index.fingerprint())


# ----------------------------------------------------------------------------- the plan and the CLI
def _notebooks_with_weights(dest: Path) -> Path:
    """The repository's notebooks, each parameters cell declaring ``weights = None`` (as the
    chapters will), in ``dest``."""
    shutil.copytree(REPO / "notebooks", dest)
    for path in dest.glob("*.ipynb"):
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                source = "".join(cell["source"])
                if "\nweights = " not in source:
                    cell["source"] = source.rstrip("\n") + "\nweights = None\n"
        path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return dest


def test_the_plan_trains_our_protocol_from_the_weights_parameter(tmp_path, monkeypatch):
    from cervixlib.book.plan import book_plan

    monkeypatch.setenv("CERVIX_DATA_HOME", str(tmp_path / "empty-home"))
    book = dict(book_dir=REPO / "book", notebooks_dir=_notebooks_with_weights(tmp_path / "notebooks"),
                runs_dir=tmp_path / "runs", generate=False)
    scratch = book_plan("smoke", **book).configs()
    pretrained = book_plan("smoke", params={"weights": "imagenet"}, **book).configs()
    released = [c for c in scratch if c.model == "rcan_densenet121_released"]  # the smoke profile's side runs
    # chapter 6's: no pretrained weights exist for a graph model; the one on CNN features reads the
    # isolated-cell DenseNet-121 of its fold, which starts where our protocol's CNNs start
    graphs = [c if c.cell_encoder is None else c.replace(cell_encoder=c.cell_encoder.replace(weights="imagenet"))
              for c in scratch if c.model.startswith("cell_graph")]
    assert released and graphs and len(pretrained) == len(scratch)
    assert any(c.cell_encoder is not None for c in graphs) and all(c.weights is None for c in graphs)
    assert set(pretrained) == set(released) | set(graphs) | {c.replace(weights="imagenet") for c in scratch
                                                             if c not in released and not c.model.startswith("cell_graph")}


def test_cli_weights_is_the_chapter_parameter(monkeypatch, tmp_path):
    """``--weights W`` of ``cervix book``, ``cervix plan`` and ``cervix train --plan`` is ``-p weights=W``."""
    import cervixlib.book
    import cervixlib.book.plan
    import cervixlib.parallel
    from cervixlib.cli import build_parser, main
    from cervixlib.plan import RunPlan

    seen = []

    def fake_plan(profile, data, *, params, **kwargs):
        seen.append(params)
        return RunPlan(profile=profile, runs=(), runs_dir=tmp_path)

    def fake_book(*args, params, **kwargs):
        seen.append(params)
        raise cervixlib.book.BookError("stop here")

    monkeypatch.setattr(cervixlib.book.plan, "book_plan", fake_plan)
    monkeypatch.setattr(cervixlib.book, "run_book", fake_book)
    monkeypatch.setattr(cervixlib.parallel, "train_plan", lambda plan, **kw: type("R", (), {"ok": True})())
    assert main(["plan", "--weights", "imagenet", "--runs", str(tmp_path)]) == 0
    assert main(["train", "--plan", "--weights", "imagenet", "-p", "epochs=2", "--runs", str(tmp_path)]) == 0
    assert main(["book", "--weights", "imagenet", "--skip-bad"]) == 1
    assert seen == [{"weights": "imagenet"}, {"epochs": 2, "weights": "imagenet"},
                    {"skip_bad": True, "weights": "imagenet"}]
    for command in ("book", "plan", "train"):
        text = build_parser()._subparsers._group_actions[0].choices[command].format_help()
        assert "--weights W" in text and "-p weights=W" in " ".join(text.split()), command


def test_the_book_fetches_the_imagenet_files_once_or_stops_in_one_line(synth_root, tmp_path, monkeypatch):
    """Before any run of the plan trains: the files of the backbones that its runs need, from
    the cache; with neither file nor network, one line and no run started."""
    import urllib.error

    from cervixlib.book import BookError
    from cervixlib.book.plan import train_book_plan
    from cervixlib.models.weights import prefetch_imagenet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    notebooks = _notebooks_with_weights(tmp_path / "notebooks")
    with pytest.raises(BookError) as info:
        train_book_plan("smoke", synth_root, {"weights": "imagenet", "models": ["resnet50"]},
                    REPO / "book" / "manifest.yml", REPO / "book", notebooks, tmp_path / "runs", ["02_baselines"],
                    jobs=1, address=None)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("the run plan of 02_baselines: no ImageNet weights for resnet50")
    assert "resnet50-0676ba61.pth" in msg and not (tmp_path / "runs").exists()
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({}, cache / "densenet121-a639ec97.pth")
    assert prefetch_imagenet(["rcan_densenet121", "densenet121", "ran92"]) == {
        "densenet121": cache / "densenet121-a639ec97.pth"}


def test_a_weights_file_reaches_the_kernel_and_the_plan_as_one_file(synth_root, tmp_path, monkeypatch):
    """``cervix book --weights mine.pth`` from the project folder: the kernels run in notebooks/,
    so the file is injected relative to it, and both the chapter's Study and the plan's name it
    by the same absolute path (the same runs)."""
    import cervixlib.book.execute as execute
    from cervixlib.book import run_book
    from cervixlib.book.plan import book_plan

    from test_book import make_project

    project = make_project(tmp_path / "proj", toc=REPO / "_toc.yml", manifest=REPO / "book" / "manifest.yml",
                           notebooks=_notebooks_with_weights(tmp_path / "notebooks"))
    notebooks = project / "notebooks"
    torch.save({}, project / "mine.pth")
    monkeypatch.chdir(project)
    injected = {}
    def fake_execute(src, out, parameters, **kwargs):  # the executed copy is the source: run_book stamps it
        injected.update(parameters)
        shutil.copyfile(src, out)

    monkeypatch.setattr(execute, "execute_notebook", fake_execute)
    run_book("smoke", synth_root, "notebooks", "book", only=["02"], params={"weights": "mine.pth"},
             build=False, train=False, kernel_name="python3")
    assert injected["weights"] == "../mine.pth"
    monkeypatch.chdir(notebooks)  # where the chapter's Study is built
    in_kernel = Study(profile="smoke", weights=injected["weights"]).config("resnet50")
    monkeypatch.chdir(project)
    planned = book_plan("smoke", synth_root, params={"weights": "mine.pth"}, only=["02"], book_dir="book",
                        notebooks_dir="notebooks", runs_dir=tmp_path / "runs").configs()
    assert in_kernel.weights == str(project / "mine.pth") and in_kernel.replace(root=str(synth_root)) in planned
