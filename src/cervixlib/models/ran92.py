"""Residual Attention Network-92 (Attention-92), built from scratch, as the authors of
Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical Cancer
Analysis", released it.

Wang, Jiang, Qian, Yang, Li, Zhang, Wang and Tang, "Residual Attention Network for Image
Classification", CVPR 2017, Table 2: a 7x7/2 conv stem and a 3x3/2 max-pool, then four
stages of pre-activation bottleneck units (He et al., ECCV 2016) at 256, 512, 1024 and
2048 channels; stages 1-3 open with one unit (stride 2 from stage 2 on) followed by 1,
2 and 3 attention modules (:class:`cervixlib.layers.RANAttentionModule`, mask depths 3,
2, 1); stage 4 has three units; then BN-ReLU, global average pooling and the linear head.

Unlike :mod:`cervixlib.models.ran` (our attention modules on a pretrained ResNet-50), this
network has no ImageNet weights: the released code trains it from random
initialisation. The released code fixes the mask up-sampling sizes for 224 px input;
here they follow the runtime shape, so any input from 64 px works. The structure is
the released one, less the shortcut convs it builds but never runs; the initialisation
is ours: He-normal convs and the last conv of every residual unit at zero (Goyal et
al., 2017), so a fresh network starts as its shortcuts. With He init alone, eval-mode
logits at initialisation reach 1e3 (BatchNorm's running statistics do not yet rescale
the 6 stacked (1 + M) * T products); the released code uses PyTorch's default init.
See docs/models.md.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from torch import Tensor, nn

from cervixlib.layers import PreActBottleneck, RANAttentionModule
from cervixlib.models._base import CervixModel
from cervixlib.models._registry import register_model
from cervixlib.models.weights import WeightsNotFoundError

__all__ = ["RAN92", "ran92", "RAN92_WIDTHS", "RAN92_MODULES", "RAN92_MASK_DEPTHS"]

# Attention-92 (RAN paper, Table 2; the released ResidualAttentionModel_92): output
# channels of stages 1-4, attention modules per stage, and their soft-mask depths.
RAN92_WIDTHS = (256, 512, 1024, 2048)
RAN92_MODULES = (1, 2, 3, 0)
RAN92_MASK_DEPTHS = (3, 2, 1, 0)
_STEM_WIDTH = 64
_STAGE4_UNITS = 3


class RAN92(CervixModel):
    """Attention-92 with the common cervixlib surface.

    Modules: ``stem`` (conv7x7/2-BN-ReLU, max-pool 3x3/2); ``stage1``..``stage4``, each an
    ``nn.Sequential`` of a first unit ``unit1`` and then attention modules
    ``attn1``, ``attn2``, ... (stage 4: units ``unit1``..``unit3``); ``final_norm`` and
    ``final_act`` (BN-ReLU, the ``attribution_layer``); ``fc``.

    Args:
        num_classes: classifier outputs (0: no classifier).
        widths, attention_modules, mask_depths: per stage, as :data:`RAN92_WIDTHS` etc.
        model_name: registry name.
    """

    _head_name = "fc"

    def __init__(
        self,
        num_classes: int = 5,
        *,
        widths: tuple[int, ...] = RAN92_WIDTHS,
        attention_modules: tuple[int, ...] = RAN92_MODULES,
        mask_depths: tuple[int, ...] = RAN92_MASK_DEPTHS,
        model_name: str = "ran92",
    ) -> None:
        super().__init__()
        self.model_name = model_name
        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, _STEM_WIDTH, kernel_size=7, stride=2, padding=3, bias=False),
            bn=nn.BatchNorm2d(_STEM_WIDTH),
            act=nn.ReLU(),
            pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        ))
        nn.init.kaiming_normal_(self.stem.conv.weight, mode="fan_out", nonlinearity="relu")
        c_in = _STEM_WIDTH
        for i, (width, n_attn, depth) in enumerate(zip(widths, attention_modules, mask_depths)):
            stride = 1 if i == 0 else 2
            blocks: OrderedDict[str, nn.Module] = OrderedDict(
                unit1=PreActBottleneck(c_in, out_channels=width, stride=stride))
            for j in range(n_attn):
                blocks[f"attn{j + 1}"] = RANAttentionModule(width, depth)
            if n_attn == 0:  # the last stage: plain units
                for j in range(1, _STAGE4_UNITS):
                    blocks[f"unit{j + 1}"] = PreActBottleneck(width)
            self.add_module(f"stage{i + 1}", nn.Sequential(blocks))
            c_in = width
        self.final_norm = nn.BatchNorm2d(c_in)
        self.final_act = nn.ReLU()
        self.num_features = c_in
        self.num_classes = num_classes
        self.fc = nn.Linear(c_in, num_classes) if num_classes > 0 else nn.Identity()
        self.attribution_layer = "final_act"
        self._num_stages = len(widths)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for i in range(self._num_stages):
            x = getattr(self, f"stage{i + 1}")(x)
        return self.final_act(self.final_norm(x))


@register_model
def ran92(*, num_classes: int = 5, weights: str | Path | None = None) -> RAN92:
    """Attention-92 from scratch (the released RAN); ``attribution_layer = "final_act"``.

    ``weights`` must be None: no ImageNet weights exist for this design (the released
    code trains it from random initialisation). A trained ran92 is restored with
    :func:`cervixlib.models.load_checkpoint`.
    """
    if weights is not None:
        raise WeightsNotFoundError(
            f"no ImageNet weights exist for ran92 (Attention-92 as released, trained from "
            f"scratch; torchvision has none): use weights=None, and load_checkpoint() for a "
            f"trained ran92 (got weights={str(weights)!r})")
    return RAN92(num_classes=num_classes)
