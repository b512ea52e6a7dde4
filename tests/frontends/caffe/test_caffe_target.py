"""The Caffe rules of ascend.td on imported prototxts (AMCT's Caffe documentation:
InnerProduct quantizes with transpose false and axis 1 only, Deconvolution with
dilation 1 and group 1 only, AVE pooling quantizes and MAX does not, Cin <= 16 stays
float)."""

from __future__ import annotations

from caffe_nets import write

import qcc
from qcc.passes.legalize_ascend import legalize

NET = """
name: "Rules"
input: "x" input_shape { dim: 1 dim: 32 dim: 4 dim: 4 }
layer { name: "conv" type: "Convolution" bottom: "x" top: "conv"
        convolution_param { num_output: 32 kernel_size: 1 } }
layer { name: "small" type: "Convolution" bottom: "conv" top: "small"
        convolution_param { num_output: 8 kernel_size: 1 } }
layer { name: "small_deconv" type: "Deconvolution" bottom: "small" top: "small_deconv"
        convolution_param { num_output: 32 kernel_size: 2 stride: 2 } }
layer { name: "deconv" type: "Deconvolution" bottom: "conv" top: "deconv"
        convolution_param { num_output: 32 kernel_size: 2 stride: 2 } }
layer { name: "deconv_group" type: "Deconvolution" bottom: "conv" top: "deconv_group"
        convolution_param { num_output: 32 kernel_size: 2 stride: 2 group: 2 } }
layer { name: "deconv_dilated" type: "Deconvolution" bottom: "conv" top: "deconv_dilated"
        convolution_param { num_output: 32 kernel_size: 2 dilation: 2 } }
layer { name: "ave" type: "Pooling" bottom: "conv" top: "ave"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "max" type: "Pooling" bottom: "conv" top: "max"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "ave" top: "fc"
        inner_product_param { num_output: 8 } }
layer { name: "fc_t" type: "InnerProduct" bottom: "ave" top: "fc_t"
        inner_product_param { num_output: 8 transpose: true } }
layer { name: "fc_axis" type: "InnerProduct" bottom: "max" top: "fc_axis"
        inner_product_param { num_output: 8 axis: 2 } }
"""


def test_caffe_rules(tmp_path):
    proto, caffemodel, _, _ = write(tmp_path, NET)
    module = qcc.load(proto, weights=caffemodel)
    cfg, _ = legalize(module, None, "ascend")
    layers = cfg["layers"]
    quantized = sorted(k for k, v in layers.items() if v["quantize"])
    assert quantized == ["ave", "conv", "deconv", "fc", "small"]
    reason = {k: v["reason"].split(":")[0] for k, v in layers.items() if not v["quantize"]}
    assert reason == {
        "small_deconv": "min_cin",  # Cin = 8 (the other layers have 32)
        "deconv_group": "deconv_group",
        "deconv_dilated": "deconv_dilation",
        "fc_t": "inner_product_transpose",
        "fc_axis": "inner_product_axis",
    }
    assert "max" not in layers  # MAX pooling is no layer
