"""The one training loop and the one evaluation used by the CLI and every notebook.

``fit(config)`` follows Wang et al. (2021): cross-entropy, Adam (lr 1e-3 by default),
mini-batch 16, the checkpoint of the best validation epoch, test metrics on the held-out
split. It picks CUDA, then MPS, then CPU; on a CPU with native bf16 (AVX512-BF16 or
AMX) it trains under bf16 autocast with channels_last, which measured several times
faster than fp32 on such 2-core machines (``benchmarks/bench_train.py``). Without
native bf16 (an AVX2-only CPU, where emulated bf16 ran about ten times slower than
fp32) it trains in fp32, still channels_last. Each configuration is trained once and
cached in the run store (:mod:`cervixlib.runs`).
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cervixlib import runs as store
from cervixlib.config import DataConfig, TrainConfig
from cervixlib.data.index import DatasetIndex
from cervixlib.data.prepared import PreparedData, prepare
from cervixlib.metrics import classification_metrics
from cervixlib.runtime import (
    autocast,
    device_name,
    loader_workers,
    memory_format_for,
    resolve_precision,
    select_device,
    set_seed,
)

__all__ = [
    "PreparedData",
    "Predictions",
    "evaluate",
    "evaluate_run",
    "fit",
    "dataset_for",
    "encoder_run",
    "make_loader",
    "prepare_data",
    "train_one_epoch",
]

_log = logging.getLogger(__name__)

#: Seconds of training between two resumable checkpoints (``last.pt``: model, optimiser,
#: history, random states) of a run in progress. On a small CPU run an epoch takes a few
#: seconds and writing ResNet-50's state with Adam's moments (about 280 MB, fsynced) about
#: as long, so a checkpoint after every epoch cost about a third of a default multi-cell run's
#: wall time (measured on a 2-core AVX2 CPU); now
#: a kill loses at most this much training plus one epoch. An epoch longer than this (the
#: paper profile) is still checkpointed after every epoch. ``fit(checkpoint_every=0)``: every epoch.
CHECKPOINT_EVERY_S = 60.0


# ------------------------------------------------------------------ data
def prepare_data(cfg: DataConfig, *, index: DatasetIndex | None = None) -> PreparedData:
    """:func:`cervixlib.data.prepare` with the split checked now (kept for callers of the old name).

    ``index``: an index of the same data already read (see :func:`cervixlib.data.prepare`).
    Raises ``ValueError`` at once if the subset is too small for a non-empty part.
    """
    data = prepare(cfg, index=index)
    data.split  # noqa: B018 -- work out (and check) the split now, before any run key
    return data


def make_loader(dataset: Dataset, *, batch_size: int, train: bool, seed: int = 0,
                device: torch.device | None = None, workers: int | None = None) -> DataLoader:
    """A DataLoader for ``device``: worker processes on CUDA, in-process loading on the CPU.

    On the CPU the workers would steal the cores the model needs, so none are used. On
    CUDA ``workers`` (default :func:`cervixlib.runtime.loader_workers`: the cores this
    process may use, less one for the training loop) prepare batches while the GPU
    trains. A :class:`~cervixlib.data.CellImageDataset` has its decoded-image cache filled
    (in parallel) before the workers start, so that they share it instead of decoding
    every image in every epoch.
    """
    from cervixlib.data import CellImageDataset

    n = 0 if device is None or device.type != "cuda" else (loader_workers() if workers is None else workers)
    if n > 0 and isinstance(dataset, CellImageDataset):
        dataset.preload(workers=n)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        collate_fn=getattr(dataset, "collate", None),  # a cell-graph dataset batches its own way
        shuffle=train,
        generator=torch.Generator().manual_seed(seed) if train else None,
        num_workers=n,
        persistent_workers=n > 0,
        pin_memory=n > 0,
        drop_last=False,
    )


# ------------------------------------------------------------------ one epoch, one evaluation
def _to_device(X: Any, device: torch.device, memory_format: torch.memory_format) -> Any:
    """An image batch in the device's memory format, or a graph batch (PyG ``Batch``) as it is."""
    if isinstance(X, torch.Tensor):
        return X.to(device, non_blocking=True, memory_format=memory_format)
    return X.to(device)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    precision: str = "fp32",
    progress: bool = False,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``loader``; returns mean loss, accuracy, images and seconds."""
    model.train()
    memory_format = memory_format_for(device)
    loss_sum, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch")
    for batch in bar:
        X, y = batch[0], batch[1]
        X = _to_device(X, device, memory_format)
        y = y.to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(X)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = y.shape[0]
        loss_sum += loss.item() * n
        correct += int((logits.argmax(1) == y).sum())
        seen += n
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    seconds = time.perf_counter() - start
    return {"loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1),
            "images": seen, "seconds": seconds, "images_per_s": seen / max(seconds, 1e-9)}


@dataclass
class Predictions:
    """Labels, class probabilities (N, C) and mean cross-entropy of one evaluation."""

    y_true: np.ndarray
    y_prob: np.ndarray
    loss: float

    @property
    def y_pred(self) -> np.ndarray:
        return self.y_prob.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float((self.y_pred == self.y_true).mean()) if len(self.y_true) else float("nan")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: DataLoader | Dataset,
    *,
    device: torch.device | None = None,
    precision: str = "fp32",
    batch_size: int = 64,
) -> Predictions:
    """Predict every image of ``data`` (a loader or a dataset) in eval mode."""
    device = device or next(model.parameters()).device
    loader = data if isinstance(data, DataLoader) else make_loader(data, batch_size=batch_size, train=False)
    memory_format = memory_format_for(device)
    model.eval()
    ys, probs, loss_sum = [], [], 0.0
    for batch in loader:
        X = _to_device(batch[0], device, memory_format)
        y = batch[1].to(device)
        with autocast(device, precision):
            logits = model(X)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        ys.append(y.cpu())
        probs.append(logits.softmax(1).cpu())
    y_true = torch.cat(ys).numpy() if ys else np.zeros(0, dtype=np.int64)
    y_prob = torch.cat(probs).numpy() if probs else np.zeros((0, 0), dtype=np.float32)
    return Predictions(y_true=y_true.astype(np.int64), y_prob=y_prob, loss=loss_sum / max(len(y_true), 1))


# ------------------------------------------------------------------ fit
def dataset_for(cfg: TrainConfig, items: list[Any], *, train: bool, encoder: store.Run | None = None,
                device: str | torch.device | None = None) -> Dataset:
    """What ``cfg.model`` reads: images (:class:`~cervixlib.data.CellImageDataset`), or, for a
    graph model, the images' cell graphs (:class:`~cervixlib.graphs.CellGraphDataset`), their node
    features from ``encoder`` (:func:`encoder_run`) where ``cfg`` has a ``cell_encoder``."""
    from cervixlib.graphs import CELL_ENCODERS, is_graph_model

    if is_graph_model(cfg.model):
        from cervixlib.graphs.dataset import CellGraphDataset

        if (cfg.model in CELL_ENCODERS) != (encoder is not None):
            raise ValueError(f"{cfg.model}: node features from a CNN need its run (encoder=, from cell_encoder) "
                             f"exactly for {', '.join(CELL_ENCODERS)}")
        return CellGraphDataset(items, train=train, skip_bad=cfg.data.skip_bad, encoder=encoder, device=device)
    from cervixlib.data import CellImageDataset

    return CellImageDataset(items, image_size=cfg.data.image_size, train=train)


def encoder_run(cfg: TrainConfig, *, runs_dir: str | Path = "runs",
                index: DatasetIndex | None = None) -> store.Run | None:
    """The finished run of ``cfg.cell_encoder`` (None without one), trained first if the store lacks
    it; a graph model of :data:`~cervixlib.graphs.CELL_ENCODERS` without one is refused."""
    from cervixlib.graphs import CELL_ENCODERS

    if cfg.cell_encoder is None:
        if cfg.model in CELL_ENCODERS:
            raise ValueError(f"{cfg.model} reads each cell as the isolated-cell {CELL_ENCODERS[cfg.model]} of the "
                             "same fold sees it: its config needs cell_encoder (Study.config sets it)")
        return None
    return fit(cfg.cell_encoder, runs_dir=runs_dir, index=index, progress=False)


def _check_encoder_split(cfg: TrainConfig, data: PreparedData) -> None:
    """Refuse a cell encoder that trained on a crop of an image this graph run tests on."""
    enc = prepare(cfg.cell_encoder.data, index=data.index)
    seen = {it.group for it in enc.part("train")} & {it.group for it in data.part("test")}
    if seen:
        raise ValueError(f"{cfg.model}: its cell encoder ({cfg.cell_encoder.model}, fold {cfg.data.fold + 1}) trained "
                         f"on crops of {len(seen)} source image(s) this run tests on (e.g. {sorted(seen)[0]}); "
                         "the encoder must be the same fold of the same grouped folds")


def _datasets(cfg: TrainConfig, data: PreparedData, *, runs_dir: str | Path,
              device: str | torch.device | None) -> tuple[Dataset, Dataset, Dataset]:
    encoder = encoder_run(cfg, runs_dir=runs_dir, index=data.index)
    if encoder is not None:
        _check_encoder_split(cfg, data)
    train, val, test = (dataset_for(cfg, data.part(name), train=name == "train", encoder=encoder, device=device)
                        for name in ("train", "val", "test"))
    return train, val, test


def _better(val: Predictions, best: dict[str, float] | None) -> bool:
    if best is None:
        return True
    return (val.accuracy, -val.loss) > (best["accuracy"], -best["loss"])


def fit(
    config: TrainConfig,
    *,
    runs_dir: str | Path = "runs",
    resume: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
    index: DatasetIndex | None = None,
    checkpoint_every: float = CHECKPOINT_EVERY_S,
    on_epoch: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> store.Run:
    """Train ``config`` once and return its run; later calls load the cached run instead.

    ``index``: the index of ``config.data``'s dataset when the caller has read it already
    (a :class:`~cervixlib.study.Study` does), so that it is not read again for every run.
    ``resume=True`` continues an interrupted run from its last checkpoint (written after an
    epoch once ``checkpoint_every`` seconds have passed since the previous one, and never
    after the last epoch, which the finished run replaces; see :data:`CHECKPOINT_EVERY_S`);
    otherwise a leftover ``.partial`` directory is discarded and training starts clean.
    A corrupt finished run is reported and retrained. While another process trains the
    same configuration, this call waits for it and loads its run (see :mod:`cervixlib.runs`).
    ``on_epoch(epoch, epochs, row)`` is called after each epoch this call trains (``row``: the
    epoch's history entry), and with ``epoch=0`` when training starts (or resumes: then
    ``row["resumed_at"]`` says after which epoch); a parallel plan reports progress with it.
    """
    data = prepare_data(config.data, index=index)
    key = store.run_key(config, data.index.fingerprint())
    final = store.find_run(Path(runs_dir), config, key)
    run = store.load_finished(final)
    if run is not None:
        _log.info("cached run %s", final)
        return run
    with store.run_lock(final):
        # Check again under the lock: another process may have finished it meanwhile.
        run = store.load_finished(final, discard_corrupt=True)
        if run is not None:
            _log.info("run %s was finished by another process; loaded it", final)
            return run
        part, state = store.start_partial(final, resume=resume)
        datasets = _datasets(config, data, runs_dir=runs_dir, device=select_device(device))
        with _threads_for(config.model, device):
            return _train(config, data, key, part, final, datasets=datasets, state=state, progress=progress,
                          device=device, checkpoint_every=checkpoint_every, on_epoch=on_epoch)


@contextlib.contextmanager
def _threads_for(model: str, device: str | torch.device | None) -> Iterator[None]:
    """One intra-op thread while a graph model trains on the CPU, then the caller's count again.

    A cell-graph batch is a few hundred tiny tensors: OpenMP's start-up per operation
    outweighs the work, and on a 2-core machine shared with other jobs two threads ran an
    epoch about 100 times slower than one (measured on a 2-core AMD EPYC, AVX2).
    """
    from cervixlib.graphs import is_graph_model

    before = torch.get_num_threads()
    if is_graph_model(model) and select_device(device).type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(config: TrainConfig, data: PreparedData, key: str, part: Path, final: Path, *,
           datasets: tuple[Dataset, Dataset, Dataset], state: dict[str, Any] | None, progress: bool, device: str | torch.device | None,
           checkpoint_every: float,
           on_epoch: Callable[[int, int, dict[str, Any]], None] | None = None) -> store.Run:
    """The training loop of :func:`fit` in ``part`` (from ``state`` if resuming); the store finishes the run."""
    from cervixlib.models import create_model

    device = select_device(device)
    precision = resolve_precision(config.precision, device)
    set_seed(config.seed)
    model = create_model(config.model, num_classes=len(data.index.classes), weights=config.weights)
    model.to(device, memory_format=memory_format_for(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_ds, val_ds, test_ds = datasets
    train_loader = make_loader(train_ds, batch_size=config.batch_size, train=True, seed=config.seed, device=device)
    val_loader = make_loader(val_ds, batch_size=64, train=False, device=device)

    history: list[dict[str, Any]] = []
    best: dict[str, float] | None = None
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"]
        torch.set_rng_state(state["torch_rng"])
        train_loader.generator.set_state(state["loader_rng"])

    if on_epoch is not None:
        on_epoch(0, config.epochs, {"resumed_at": start_epoch})
    label = f"{config.model}/{config.data.subset}"
    best_model: dict[str, torch.Tensor] | None = None  # the best epoch's weights not yet in best.pt
    best_val: Predictions | None = None  # the best epoch's validation predictions, if it ran in this call
    last_checkpoint = time.monotonic()
    for epoch in range(start_epoch, config.epochs):
        tr = train_one_epoch(model, train_loader, optimizer, device=device, precision=precision,
                             progress=progress, desc=f"{label} epoch {epoch + 1}/{config.epochs}")
        val = evaluate(model, val_loader, device=device, precision=precision)
        row = {"epoch": epoch + 1, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
               "val_loss": val.loss, "val_accuracy": val.accuracy,
               "train_seconds": tr["seconds"], "train_images_per_s": tr["images_per_s"]}
        history.append(row)
        if _better(val, best):
            best = {"epoch": epoch + 1, "accuracy": val.accuracy, "loss": val.loss}
            best_model = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            best_val = val
        _log.info("%s epoch %d/%d: train loss %.3f acc %.3f | val loss %.3f acc %.3f | %.1f img/s",
                  label, epoch + 1, config.epochs, tr["loss"], tr["accuracy"], val.loss,
                  val.accuracy, tr["images_per_s"])
        if epoch + 1 < config.epochs and time.monotonic() - last_checkpoint >= checkpoint_every:
            store.save_epoch(part, {
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "history": history, "best": best, "torch_rng": torch.get_rng_state(),
                "loader_rng": train_loader.generator.get_state()}, best_model=best_model)
            best_model, last_checkpoint = None, time.monotonic()
        if on_epoch is not None:  # after the checkpoint, if one was due
            on_epoch(epoch + 1, config.epochs, row)
    if best_model is not None:
        store.save_best(part, best_model)

    # Evaluate the best epoch's weights on the validation and test splits.
    # The validation predictions are the best epoch's own, unless that epoch ran before a resume.
    model.load_state_dict(store.safe_torch_load(part / "best.pt"))
    val = best_val if best_val is not None else evaluate(model, val_loader, device=device, precision=precision)
    test = evaluate(model, make_loader(test_ds, batch_size=64, train=False, device=device),
                    device=device, precision=precision)
    classes = list(data.index.classes)
    metrics = {"test": classification_metrics(test.y_true, test.y_prob, classes, seed=config.seed),
               "val": classification_metrics(val.y_true, val.y_prob, classes, seed=config.seed),
               "best_epoch": best["epoch"] if best else None}
    predictions = {
        "test_index": np.asarray(data.split.test), "test_y": test.y_true, "test_prob": test.y_prob,
        "val_index": np.asarray(data.split.val), "val_y": val.y_true, "val_prob": val.y_prob,
        "test_paths": np.asarray([str(Path(data.items[i].path).relative_to(data.root)) for i in data.split.test])}
    info = {"data_root": str(data.root.resolve()), "synthetic": bool(data.index.synthetic),
            "layout": data.index.layout, "classes": classes,
            "skipped_files": len(data.index.skipped),
            "split_sizes": {n: int(len(getattr(data.split, n))) for n in ("train", "val", "test")},
            "test_with_sibling_in_train": data.test_with_sibling_in_train,
            "weights_source": getattr(model, "weights_source", config.weights),
            "device": str(device), "device_name": device_name(device), "precision": precision,
            "code_version": store.code_version(),
            "torch": torch.__version__, "python": platform.python_version(),
            "train_seconds": float(sum(h["train_seconds"] for h in history))}
    return store.finish_run(part, final, config=config, key=key, info=info, metrics=metrics,
                            history=history, predictions=predictions)


def evaluate_run(run: store.Run, *, device: str | torch.device | None = None) -> dict[str, float]:
    """Re-predict a run's test split with its best checkpoint and compare with the saved predictions.

    This is the check behind ``cervix evaluate``: the saved predictions, hence every
    reported metric, must be reproducible from the saved checkpoint and the data.
    """
    device = select_device(device)
    precision = run.info.get("precision", "fp32") if device.type == run.info.get("device", "cpu").split(":")[0] else "fp32"
    model = run.load_model(device)
    model.to(memory_format=memory_format_for(device))
    items = run.test_items()
    encoder = encoder_run(run.config, runs_dir=run.dir.parent, index=run.dataset_index)
    pred = evaluate(model, dataset_for(run.config, items, train=False, encoder=encoder, device=device),
                    device=device, precision=precision)
    if not np.array_equal(pred.y_true, run.y_true):
        raise store.RunError(f"{run.dir}: the data's test labels no longer match the saved ones "
                             "(was the dataset changed since training?)")
    return {"accuracy": pred.accuracy, "agreement": float((pred.y_pred == run.y_pred).mean()),
            "max_prob_diff": float(np.abs(pred.y_prob - run.predictions["test_prob"]).max())}
