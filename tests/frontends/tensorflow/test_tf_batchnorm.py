"""BatchNorm in both frozen forms ends up inside the conv before it (qcc-fuse-bn):
Keras 3's Rsqrt/Mul/Sub/AddV2 over constants (folded at import to a per-channel
Mul and Add), and FusedBatchNormV3. The fused graph still matches TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from qcc import passes, runtime
from qcc.frontends.tensorflow import load_graphdef


@pytest.mark.parametrize("kind", ["cnn_bn", "fused_bn"])
def test_batchnorm_fused_into_conv(tf_models, kind):
    path, shape, run_tf = tf_models[kind]
    module = load_graphdef(path)
    before = [op.name for op in module.walk()]
    assert ("qnn.batch_norm" in before) == (kind == "fused_bn")
    assert ("qnn.mul" in before) == (kind == "cnn_bn")
    passes.run(module, "canonicalize,qcc-fuse-bn")
    after = [op.name for op in module.walk()]
    for gone in ("qnn.batch_norm", "qnn.scale", "qnn.mul", "qnn.add"):
        assert gone not in after, gone
    x = np.random.default_rng(5).normal(size=shape).astype(np.float32)
    (got,) = runtime.run(module, {"x": x}).values()
    np.testing.assert_allclose(got, run_tf(x), atol=1e-4, rtol=1e-4)
