"""The facts of SIPaKMeD and of Wang et al. (2021), in one place.

Everything here is published (Plissiti et al., ICIP 2018; Wang et al., "Towards
Interpretable Attention Networks for Cervical Cancer Analysis", IEEE EMBC 2021) or read
from the authors' released code; ``shared/DATA.md`` gives the sources. Beside them, the
rule that gives any data set's classes short names (:func:`class_abbreviations`: the
paper's for SIPaKMeD's classes, initials or first letters for others). Other modules
import these names instead of writing the numbers again. No heavy imports: the
command-line parser and the data layer read this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "MODEL_TITLES",
    "model_title",
    "CLASSES",
    "CLASS_ABBREVIATIONS",
    "ISOLATED_COUNTS",
    "MULTI_COUNTS",
    "PAPER_FRACTIONS",
    "PAPER_TABLE1_ISOLATED",
    "PAPER_TABLE2",
    "RELEASED_DESIGNS",
    "RELEASED_IMAGENET",
    "SUBSET_WORDS",
    "class_abbreviations",
    "class_key_text",
    "paper_model",
]

#: The five SIPaKMeD classes, in label order (label = position).
CLASSES: tuple[str, ...] = ("Dyskeratotic", "Koilocytotic", "Metaplastic", "Parabasal",
                            "Superficial-Intermediate")
#: The paper's short class names, in label order (its per-class F1 columns).
CLASS_ABBREVIATIONS: tuple[str, ...] = ("Dys", "Koi", "Met", "Par", "Sup")

#: What each subset holds, in a sentence's words: SIPaKMeD's two and the one subset of a
#: class-per-folder set (:data:`cervixlib.layout.SUBSETS`).
SUBSET_WORDS: dict[str, str] = {"multi": "multi-cell images", "isolated": "isolated cells", "images": "images"}

#: SIPaKMeD's multi-cell images and isolated cells per class, as the download holds them
#: (DATA.md): 966 images and 4,049 cells.
MULTI_COUNTS: dict[str, int] = dict(zip(CLASSES, (223, 238, 271, 108, 126)))
ISOLATED_COUNTS: dict[str, int] = dict(zip(CLASSES, (813, 825, 793, 787, 831)))
#: Isolated cells per class as Wang et al. (2021), Table I, print them: 813
#: Superficial-Intermediate cells (total 4,031) where the download holds 831 (total 4,049,
#: as the dataset's page says). A typo: the released code's ``Results.md`` has 84 test
#: cells of that class from its ``n - int(0.7 n) - int(0.2 n)`` split; n = 831 gives 84,
#: n = 813 would give 82.
PAPER_TABLE1_ISOLATED: dict[str, int] = {**ISOLATED_COUNTS, "Superficial-Intermediate": 813}

#: The paper's split: 70% train, 20% validation, 10% test.
PAPER_FRACTIONS: tuple[float, float, float] = (0.7, 0.2, 0.1)

#: Wang et al. (2021), Table II: test accuracy in %, per-class F1 on multi-cell images in
#: the order of :data:`CLASS_ABBREVIATIONS`.
PAPER_TABLE2: dict[str, dict[str, Any]] = {
    "resnet50": {"isolated_acc": 95.11, "multi_acc": 85.15, "multi_f1": (0.869, 0.744, 0.839, 0.96, 0.846)},
    "densenet121": {"isolated_acc": 95.84, "multi_acc": 89.11, "multi_f1": (0.898, 0.809, 0.929, 0.957, 0.889)},
    "ran_resnet50": {"isolated_acc": 94.13, "multi_acc": 84.16, "multi_f1": (0.851, 0.783, 0.877, 0.88, 0.815)},
    "rcan_densenet121": {"isolated_acc": 96.33, "multi_acc": 91.09, "multi_f1": (0.978, 0.869, 0.896, 1.0, 0.889)},
}


#: Words left out of a multi-word class name's initials ("Negative for intraepithelial lesion": NIL).
_MINOR_WORDS = frozenset({"a", "an", "and", "for", "of", "or", "the", "to", "with"})
#: Longest abbreviation derived for a class; a name this short is its own abbreviation ("ASC-US").
_ABBREVIATION_CHARS = 6


def _abbreviation_candidates(name: str) -> list[str]:
    """Ever longer short names for one class, the preferred one first.

    A name of at most :data:`_ABBREVIATION_CHARS` characters without spaces stays as it is
    ("ASC-US", "LSIL"). A name of several words (split at spaces and underscores; a hyphen
    keeps its word whole) gives its initials in capitals, minor words left out and numbers
    whole ("Negative for intraepithelial lesion": "NIL", "Low-grade squamous
    intraepithelial lesion": "LSIL", "carcinoma_in_situ": "CIS", "class_10": "C10"), then
    more letters of its first word ("NeIL", "NegIL"). One long word gives its first three
    letters, then four, then five ("Koilocytes": "Koi", "Koil", "Koilo")."""
    name = name.strip()
    words = [w for w in re.split(r"[\s_]+", name) if w]
    if len(name) <= _ABBREVIATION_CHARS and len(words) <= 1:
        return [name]
    kept = [w for w in words if w.lower() not in _MINOR_WORDS] or words
    if len(kept) == 1:
        return [kept[0][:n] for n in range(3, _ABBREVIATION_CHARS)]
    head = kept[0]
    rest = "".join(w if w.isdigit() else w[0].upper() for w in kept[1:])
    if head.isdigit():
        return [(head + rest)[:_ABBREVIATION_CHARS]]
    return [(head[0].upper() + head[1:n].lower() + rest)[:_ABBREVIATION_CHARS]
            for n in range(1, 4) if n == 1 or n < len(head)]


def class_abbreviations(classes: Sequence[str]) -> dict[str, str]:
    """``{class name: short name}`` for a data set's classes, no two alike.

    SIPaKMeD's classes keep the paper's short names (:data:`CLASS_ABBREVIATIONS`). Any other
    class gets its first candidate (:func:`_abbreviation_candidates`) that no other class
    of the list has: "Negative for intraepithelial lesion" is "NIL", "ASC-US" stays,
    "Metastatic" beside "Metaplastic" (the paper's "Met") becomes "Meta". Classes that share
    every candidate are numbered ("Cell1", "Cell2"). Figures and tables use these for axes
    and headings and give the full names beside them.
    """
    paper = dict(zip(CLASSES, CLASS_ABBREVIATIONS))
    names = list(dict.fromkeys(classes))
    short = {c: paper[c] for c in names if c in paper}
    todo = {c: _abbreviation_candidates(c) for c in names if c not in paper}
    level = dict.fromkeys(todo, 0)
    while True:  # lengthen every clashing name that still can be lengthened
        guess = {c: todo[c][level[c]] for c in todo}
        taken = [*short.values(), *guess.values()]
        clashing = [c for c in todo if taken.count(guess[c]) > 1 and level[c] + 1 < len(todo[c])]
        if not clashing:
            break
        for c in clashing:
            level[c] += 1
    taken = [*short.values(), *guess.values()]
    short |= {c: g for c, g in guess.items() if taken.count(g) == 1}
    counts: dict[str, int] = {}
    for c in [c for c in todo if c not in short]:  # what still clashes is numbered, in the list's order
        stem = guess[c][:4]
        while (numbered := f"{stem}{counts.setdefault(stem, 0) + 1}") in taken:
            counts[stem] += 1
        counts[stem] += 1
        short[c] = numbered
        taken.append(numbered)
    return {c: short[c] for c in names}


def class_key_text(short: Mapping[str, str], *, sep: str = ", ", width: int | None = None) -> str:
    """Classes by short name (``{name: short name}``, from :func:`class_abbreviations`),
    each followed by its full name where the two differ: ``"ASC-US, MC (Metaplastic cells), NIL (Negative for intraepithelial lesion)"``.

    ``width``: break into lines of about that many characters, joined by ``<br>`` (for a
    plotly annotation under a figure).
    """
    entries = [s if s == c else f"{s} ({c})" for c, s in short.items()]
    if width is None:
        return sep.join(entries)
    lines: list[str] = []
    for entry in entries:
        if lines and len(lines[-1]) + len(sep) + len(entry) <= width:
            lines[-1] += sep + entry
        else:
            lines.append(entry)
    return (sep.rstrip() + "<br>").join(lines)


#: The released code's design for each of the paper's four models (registry names): the
#: same torchvision backbones, its one-layer channel attention on DenseNet-121, and the
#: Residual Attention Network-92 trained from scratch (docs/models.md compares them).
RELEASED_DESIGNS: dict[str, str] = {"resnet50": "resnet50", "densenet121": "densenet121",
                                    "ran_resnet50": "ran92", "rcan_densenet121": "rcan_densenet121_released"}
#: The released designs that start from ImageNet weights in the released code.
RELEASED_IMAGENET: tuple[str, ...] = ("resnet50", "densenet121", "rcan_densenet121_released")


#: How pages name the models of the registry: the paper's four by the paper's names, the
#: released designs by theirs, the cell-graph models (chapter 6) in words.
MODEL_TITLES: dict[str, str] = {
    "resnet50": "ResNet-50", "densenet121": "DenseNet-121", "ran_resnet50": "RAN-ResNet-50",
    "rcan_densenet121": "RCAN-DenseNet-121", "ran92": "Attention-92 (released)",
    "rcan_densenet121_released": "RCAN-DenseNet-121 (released)",
    "cell_graph_gat": "cell-graph GATv2", "cell_graph_gin": "cell-graph GIN",
    "cell_graph_gat_no_edges": "cell-graph GATv2 without edges",
    "cell_graph_gat_cnn": "cell-graph GATv2 on CNN features",
}


def model_title(name: str) -> str:
    """A model's name on a page (:data:`MODEL_TITLES`), or the registry name it does not know."""
    return MODEL_TITLES.get(name, name)


def paper_model(design: str) -> str:
    """The paper's model (one of :data:`PAPER_TABLE2`) that a registry name stands for."""
    return next((ours for ours, released in RELEASED_DESIGNS.items() if released == design), design)
