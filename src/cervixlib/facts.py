"""The facts of SIPaKMeD and of Wang et al. (2021), in one place.

Everything here is published (Plissiti et al., ICIP 2018; Wang et al., "Towards
Interpretable Attention Networks for Cervical Cancer Analysis", IEEE EMBC 2021) or read
from the authors' released code; ``shared/DATA.md`` gives the sources. Other modules
import these names instead of writing the numbers again. No heavy imports: the
command-line parser and the data layer read this module.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CLASSES",
    "CLASS_ABBREVIATIONS",
    "ISOLATED_COUNTS",
    "MULTI_COUNTS",
    "PAPER_FRACTIONS",
    "PAPER_TABLE1_ISOLATED",
    "PAPER_TABLE2",
    "RELEASED_DESIGNS",
    "RELEASED_IMAGENET",
    "abbreviation",
    "paper_model",
]

#: The five SIPaKMeD classes, in label order (label = position).
CLASSES: tuple[str, ...] = ("Dyskeratotic", "Koilocytotic", "Metaplastic", "Parabasal",
                            "Superficial-Intermediate")
#: The paper's short class names, in label order (its per-class F1 columns).
CLASS_ABBREVIATIONS: tuple[str, ...] = ("Dys", "Koi", "Met", "Par", "Sup")

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


def abbreviation(name: str) -> str:
    """The paper's short name of a SIPaKMeD class; the first three letters of any other class."""
    return dict(zip(CLASSES, CLASS_ABBREVIATIONS)).get(name, name[:3])


#: The released code's design for each of the paper's four models (registry names): the
#: same torchvision backbones, its one-layer channel attention on DenseNet-121, and the
#: Residual Attention Network-92 trained from scratch (docs/models.md compares them).
RELEASED_DESIGNS: dict[str, str] = {"resnet50": "resnet50", "densenet121": "densenet121",
                                    "ran_resnet50": "ran92", "rcan_densenet121": "rcan_densenet121_released"}
#: The released designs that start from ImageNet weights in the released code.
RELEASED_IMAGENET: tuple[str, ...] = ("resnet50", "densenet121", "rcan_densenet121_released")


def paper_model(design: str) -> str:
    """The paper's model (one of :data:`PAPER_TABLE2`) that a registry name stands for."""
    return next((ours for ours, released in RELEASED_DESIGNS.items() if released == design), design)
