"""Import torchvision (and timm, which imports it) beside the CPU torch.

torchvision's compiled extension does not load with this torch build, and its
Python half then fails registering fake kernels for `torchvision::nms` and
`torchvision::qnms`. Defining those two op schemas first lets the pure-Python
models import; the zoo never calls nms.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def import_torchvision() -> ModuleType:
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018 (defined by the extension or earlier here)
    except (AttributeError, RuntimeError):
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARIES.append(lib)  # the schemas live as long as the Library object
    return importlib.import_module("torchvision")


def import_timm() -> ModuleType:
    import_torchvision()
    return importlib.import_module("timm")


_LIBRARIES: list[object] = []
