"""The QAT config: what is quantized and how, checked at construction (no torch).

Pairs follow MindSpore's `QuantizationAwareTraining`: `(weights, activations)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from qcc.errors import QccError

SCHEMES = ("fixed", "range_learning")
BITS = tuple(range(2, 9))


class QatError(QccError):
    """A QAT config, model or trained module qcc cannot use."""


def _pair(value: object, name: str) -> tuple[bool, bool]:
    if isinstance(value, bool):
        return value, value
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, bool) for v in value)):
        return bool(value[0]), bool(value[1])
    raise QatError(f"QAT config: {name} must be true/false or a pair (weights, activations) "
                   f"of true/false, got {value!r}")


@dataclass(frozen=True)
class QatConfig:
    """weight_bits/act_bits in 2..8; per_channel, symmetric and narrow_range as
    (weights, activations) pairs or one bool for both; scheme `fixed` (ranges from
    calibration, only weights learn) or `range_learning` (scale and offset are
    parameters, LSQ-style gradients, initialised from calibration); quant_delay:
    training steps before quantizers engage; bn_fold: Conv+BatchNorm folded in every
    forward with batch statistics until freeze_bn_delay steps, running ones after."""

    weight_bits: int = 8
    act_bits: int = 8
    per_channel: tuple[bool, bool] | bool = (True, False)
    symmetric: tuple[bool, bool] | bool = (True, False)
    narrow_range: tuple[bool, bool] | bool = (True, False)
    scheme: str = "range_learning"
    quant_delay: int = 0
    bn_fold: bool = False
    freeze_bn_delay: int | None = None

    def __post_init__(self) -> None:
        for name in ("weight_bits", "act_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v not in BITS:
                raise QatError(f"QAT config: {name} {v!r} is not supported "
                               f"(allowed: {', '.join(map(str, BITS))})")
        for name in ("per_channel", "symmetric", "narrow_range"):
            object.__setattr__(self, name, _pair(getattr(self, name), name))
        if self.per_channel[1]:  # type: ignore[index]
            raise QatError("QAT config: per_channel for activations is not supported "
                           "(allowed: (True, False) or (False, False))")
        if self.scheme not in SCHEMES:
            raise QatError(f"QAT config: unknown scheme {self.scheme!r} "
                           f"(allowed: {', '.join(SCHEMES)})")
        for name in ("quant_delay", "freeze_bn_delay"):
            v = getattr(self, name)
            if v is None and name == "freeze_bn_delay":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise QatError(f"QAT config: {name} must be an integer >= 0, got {v!r}")
        if not isinstance(self.bn_fold, bool):
            raise QatError(f"QAT config: bn_fold must be true or false, got {self.bn_fold!r}")

    def pair(self, name: str) -> tuple[bool, bool]:
        """`per_channel`, `symmetric` or `narrow_range` as (weights, activations)."""
        return _pair(getattr(self, name), name)

    @classmethod
    def of(cls, config: QatConfig | dict | None) -> QatConfig:
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if isinstance(config, dict):
            unknown = sorted(set(config) - set(cls.__dataclass_fields__))
            if unknown:
                raise QatError(f"QAT config: unknown field(s) {', '.join(unknown)} (allowed: "
                               f"{', '.join(cls.__dataclass_fields__)})")
            return cls(**config)
        raise QatError(f"QAT config must be a QatConfig or a dict, got {type(config).__name__}")
