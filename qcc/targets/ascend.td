// The Ascend AI Processor's quantization rules as data (the rules AMCT applies).
// Language: qcc/targets/loader.py; applied by qcc-legalize-ascend. A layer a rule
// fires on stays float, with a remark naming the rule. Changing a rule here needs
// no Python change.

target ascend {
  // The framework ops that quantize, and the qnn layer op each imports as. A layer
  // whose source is not listed here stays float (rule framework_table).
  framework caffe {
    layer Convolution -> qnn.conv;
    layer Deconvolution -> qnn.conv_transpose;
    layer InnerProduct -> qnn.dense;
    layer Pooling -> qnn.avg_pool;  // pool: AVE (MAX imports as qnn.max_pool, no layer)
  }
  framework tensorflow {
    layer Conv2D -> qnn.conv;
    layer DepthwiseConv2dNative -> qnn.conv;
    layer Conv3D -> qnn.conv;
    layer Conv2DBackpropInput -> qnn.conv_transpose;
    layer MatMul -> qnn.dense;
    layer BatchMatMulV2 -> qnn.dense;
    layer AvgPool -> qnn.avg_pool;
  }
  framework onnx {
    layer Conv -> qnn.conv;
    layer ConvTranspose -> qnn.conv_transpose;
    layer Gemm -> qnn.dense;
    layer MatMul -> qnn.dense;  // a constant 2-D B imports as qnn.dense, else qnn.matmul
    layer AveragePool -> qnn.avg_pool;
  }
  framework pytorch {
    layer Conv1d -> qnn.conv;
    layer Conv2d -> qnn.conv;
    layer Conv3d -> qnn.conv;
    layer ConvTranspose1d -> qnn.conv_transpose;
    layer ConvTranspose2d -> qnn.conv_transpose;
    layer Linear -> qnn.dense;
    layer AvgPool2d -> qnn.avg_pool;
  }

  // Weights int8 symmetric (per channel for conv and deconv, per tensor for fully
  // connected); activations int8 per tensor, asymmetric allowed; the bias is int32,
  // round(b / (scale_d * scale_w)).
  quant qnn.conv {
    weight int8 symmetric per_channel;
    activation int8 per_tensor asymmetric_allowed;
    bias int32;
  }
  quant qnn.conv_transpose {
    weight int8 symmetric per_channel;
    activation int8 per_tensor asymmetric_allowed;
    bias int32;
  }
  quant qnn.dense {
    weight int8 symmetric per_tensor;
    activation int8 per_tensor asymmetric_allowed;
    bias int32;
  }
  quant qnn.avg_pool {
    activation int8 per_tensor asymmetric_allowed;
  }

  // Restrictions, checked in this order; the first that fires is reported.
  rule framework_table "{source} imported as {op} is not in the target's framework table"
    : * when not in_framework_table -> float;

  // AMCT's Caffe rules: InnerProduct quantizes only with transpose false and axis 1,
  // Deconvolution only with dilation 1 (deconv_dilation) and group 1.
  rule inner_product_transpose "InnerProduct with transpose: true is not quantized"
    : qnn.dense when framework == "caffe" and transpose_b -> float;

  rule inner_product_axis "InnerProduct with axis != 1 is not quantized"
    : qnn.dense when framework == "caffe" and attr("caffe.axis", 1) != 1 -> float;

  rule deconv_group "Deconvolution with group {groups} is not quantized (only 1)"
    : qnn.conv_transpose when framework == "caffe" and groups != 1 -> float;

  rule matmul_transposed "MatMul with transposed or adjoint operands is not quantized"
    : qnn.dense, qnn.matmul when transpose_a or transpose_b or adj_x or adj_y -> float;

  rule deconv_dilation "conv_transpose with dilations {dilations} is not quantized (only 1)"
    : qnn.conv_transpose when any(dilations != 1) -> float;

  rule conv3d_dilation "a 3-d convolution needs dilation_d = 1 (dilations {dilations})"
    : qnn.conv when spatial_dims == 3 and dilations[0] != 1 -> float;

  rule padding_zeros "padding mode {pad_mode} is not supported (zeros only)"
    : qnn.conv, qnn.conv_transpose when pad_mode != "zeros" -> float;

  rule min_cin "Cin = {in_channels} <= 16: no speed gain, accuracy risk"
    : qnn.conv, qnn.conv_transpose, qnn.dense when in_channels <= 16 -> float overridable;
}
