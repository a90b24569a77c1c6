"""Explanations of the classifiers of Wang et al. (2021), "Towards Interpretable
Attention Networks for Cervical Cancer Analysis", and the measures of their quality.

The paper explains its models with input gradients and Integrated Gradients (Fig. 2)
and judges the maps by eye. This package computes the maps through Captum and
pytorch-grad-cam and measures them, one module a category as Quantus names them:

- attribution methods and maps: :mod:`~cervixlib.explain.attributions` (saliency and IG,
  the released IG), :mod:`~cervixlib.explain.baselines` (IG's starting points),
  :mod:`~cervixlib.explain.maps` (Grad-CAM, the RAN soft masks, two controls: every
  method as non-negative maps); :func:`reduce_channels` comes from :mod:`cervixlib.reductions`
  (below both this package and :mod:`cervixlib.figures`, which draws the same maps);
- :mod:`~cervixlib.explain.faithfulness`: deletion, insertion, completeness;
- :mod:`~cervixlib.explain.localisation`: pointing game, in-cell and part shares, concentration;
- :mod:`~cervixlib.explain.randomisation`: cascading randomisation, the full one as its last stage;
- :mod:`~cervixlib.explain.robustness`: IG's baseline and its number of steps;
- :mod:`~cervixlib.explain.evaluation`: every method measured on one model's test images
  (Fig. 2's claim is tested from two such studies in :mod:`cervixlib.claims`);
- :mod:`~cervixlib.explain.explorer`: IG along its path, live and static;
  :mod:`~cervixlib.explain.figures`: the chapter's figures of these measures.

What a notebook or a user calls is listed in ``__all__`` (docs/ARCHITECTURE.md, "The
explanation API"); helpers stay importable from their modules. ``cervix explain`` is
:mod:`cervixlib.explain.command`.
"""

from __future__ import annotations

from cervixlib.explain.attributions import RELEASED_IG, Attribution, attribute
from cervixlib.explain.baselines import BASELINES, make_baseline
from cervixlib.explain.evaluation import METRICS, ExplanationStudy, explanation_study
from cervixlib.explain.explorer import ig_explorer, static_ig_slider
from cervixlib.explain.faithfulness import PerturbationCurves, completeness, perturbation_curves
from cervixlib.explain.localisation import concentration, in_cell_share, part_shares, pointing_game
from cervixlib.explain.maps import MAP_METHODS, attention_map, gradcam, method_maps
from cervixlib.explain.randomisation import cascading_randomisation, randomise_weights, spearman_per_image
from cervixlib.reductions import reduce_channels
from cervixlib.explain.robustness import baseline_sensitivity, convergence_rows, ig_convergence

__all__ = [
    # attribution methods and maps
    "BASELINES",
    "MAP_METHODS",
    "RELEASED_IG",
    "Attribution",
    "attention_map",
    "attribute",
    "gradcam",
    "make_baseline",
    "method_maps",
    "reduce_channels",
    # faithfulness
    "PerturbationCurves",
    "completeness",
    "perturbation_curves",
    # localisation
    "concentration",
    "in_cell_share",
    "part_shares",
    "pointing_game",
    # randomisation
    "cascading_randomisation",
    "randomise_weights",
    "spearman_per_image",
    # robustness
    "baseline_sensitivity",
    "convergence_rows",
    "ig_convergence",
    # the per-model study
    "METRICS",
    "ExplanationStudy",
    "explanation_study",
    # the explorer
    "ig_explorer",
    "static_ig_slider",
]
