// RUN: qcc-opt %s --split-input-file -p qcc-legalize-ascend | filecheck %s

// Every rule of qcc/targets/ascend.td, a case where it fires (the layer gets
// qcc.float naming the rule) and one where it does not (the layer gets qcc.legal,
// the target's quant settings for it). The float computation never changes: the
// pass only annotates.

// Rule framework_table fires: a source op the ONNX table does not list, and a listed
// op (MatMul) imported as an op the table does not map it to (qnn.matmul: B is
// not a constant).
// CHECK-LABEL: func.func @framework_table_fires
// CHECK: qnn.matmul %x, %y {name = "einsum", source = "onnx.Einsum", qcc.float = "framework_table: onnx.Einsum imported as qnn.matmul is not in the target's framework table"}
// CHECK: qnn.matmul %x, %y {name = "mm", source = "onnx.MatMul", qcc.float = "framework_table: onnx.MatMul imported as qnn.matmul is not in the target's framework table"}
// CHECK: qnn.conv %z, %{{.*}} {name = "fused", source = "tensorflow.FusedConv", qcc.float = "framework_table: tensorflow.FusedConv imported as qnn.conv is not in the target's framework table",
func.func @framework_table_fires(%x: tensor<2x32xf32>, %y: tensor<32x32xf32>, %z: tensor<1x32x2x2xf32>) -> (tensor<2x32xf32>, tensor<2x32xf32>, tensor<1x32x2x2xf32>) {
  %0 = qnn.matmul %x, %y {name = "einsum", source = "onnx.Einsum"} : (tensor<2x32xf32>, tensor<32x32xf32>) -> tensor<2x32xf32>
  %1 = qnn.matmul %x, %y {name = "mm", source = "onnx.MatMul"} : (tensor<2x32xf32>, tensor<32x32xf32>) -> tensor<2x32xf32>
  %w = qnn.constant dense<0.5> : tensor<32x32x1x1xf32>
  %2 = qnn.conv %z, %w {name = "fused", source = "tensorflow.FusedConv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x32x2x2xf32>, tensor<32x32x1x1xf32>) -> tensor<1x32x2x2xf32>
  func.return %0, %1, %2 : tensor<2x32xf32>, tensor<2x32xf32>, tensor<1x32x2x2xf32>
}

// -----

// Rule framework_table does not fire: listed ops of each framework, imported as the
// op the table maps them to.
// CHECK-LABEL: func.func @framework_table_listed
// CHECK-NOT: qcc.float
// CHECK: func.return
func.func @framework_table_listed(%x: tensor<1x32x2x2xf32>, %v: tensor<2x32xf32>) -> (tensor<1x32x2x2xf32>, tensor<1x32x2x2xf32>, tensor<2x32xf32>, tensor<2x32xf32>, tensor<1x32x1x1xf32>) {
  %w = qnn.constant dense<0.5> : tensor<32x32x1x1xf32>
  %0 = qnn.conv %x, %w {name = "tf_conv", source = "tensorflow.Conv2D", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x32x2x2xf32>, tensor<32x32x1x1xf32>) -> tensor<1x32x2x2xf32>
  %1 = qnn.conv %x, %w {name = "caffe_conv", source = "caffe.Convolution", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x32x2x2xf32>, tensor<32x32x1x1xf32>) -> tensor<1x32x2x2xf32>
  %d = qnn.constant dense<0.5> : tensor<32x32xf32>
  %2 = qnn.dense %v, %d {name = "linear", source = "pytorch.Linear"} : (tensor<2x32xf32>, tensor<32x32xf32>) -> tensor<2x32xf32>
  %3 = qnn.dense %v, %d {name = "onnx_matmul", source = "onnx.MatMul"} : (tensor<2x32xf32>, tensor<32x32xf32>) -> tensor<2x32xf32>
  %4 = qnn.avg_pool %x {name = "pool", source = "caffe.Pooling", kernel = array<i64: 2, 2>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = false, count_include_pad = false} : (tensor<1x32x2x2xf32>) -> tensor<1x32x1x1xf32>
  func.return %0, %1, %2, %3, %4 : tensor<1x32x2x2xf32>, tensor<1x32x2x2xf32>, tensor<2x32xf32>, tensor<2x32xf32>, tensor<1x32x1x1xf32>
}

// -----

// Rule framework_table without a source attribute: a layer op the module's framework
// maps something to passes (qnn.dense), one it maps nothing to fires (qnn.matmul).
// CHECK-LABEL: func.func @framework_table_no_source
// CHECK: qnn.dense %x, %{{.*}} {name = "plain_dense", qcc.legal = {weight = {bits = 8 : i64, symmetric = true, channel_wise = false}, activation = {bits = 8 : i64}}} :
// CHECK: qnn.matmul %x, %{{.*}} {name = "plain_matmul", qcc.float = "framework_table: (unknown) imported as qnn.matmul is not in the target's framework table"}
builtin.module attributes {qcc.framework = "onnx"} {
  func.func @framework_table_no_source(%x: tensor<2x32xf32>, %y: tensor<32x32xf32>) -> (tensor<2x32xf32>, tensor<2x32xf32>) {
    %d = qnn.constant dense<0.5> : tensor<32x32xf32>
    %0 = qnn.dense %x, %d {name = "plain_dense"} : (tensor<2x32xf32>, tensor<32x32xf32>) -> tensor<2x32xf32>
    %1 = qnn.matmul %x, %y {name = "plain_matmul"} : (tensor<2x32xf32>, tensor<32x32xf32>) -> tensor<2x32xf32>
    func.return %0, %1 : tensor<2x32xf32>, tensor<2x32xf32>
  }
}

// -----

// Rule matmul_transposed fires: TensorFlow's transpose_a / transpose_b / adj_y,
// recorded as attributes on the layer.
// CHECK-LABEL: func.func @matmul_transposed_fires
// CHECK: qnn.dense %x, %{{.*}} {name = "ta", source = "tensorflow.MatMul", transpose_a = true, qcc.float = "matmul_transposed: MatMul with transposed or adjoint operands is not quantized"}
// CHECK: qnn.dense %x, %{{.*}} {name = "tb", source = "tensorflow.MatMul", transpose_b = true, qcc.float = "matmul_transposed: MatMul with transposed or adjoint operands is not quantized"}
// CHECK: qnn.dense %x, %{{.*}} {name = "ay", source = "tensorflow.BatchMatMulV2", adj_y = true, qcc.float = "matmul_transposed: MatMul with transposed or adjoint operands is not quantized"}
func.func @matmul_transposed_fires(%x: tensor<2x32xf32>) -> (tensor<2x32xf32>, tensor<2x32xf32>, tensor<2x32xf32>) {
  %d = qnn.constant dense<0.5> : tensor<32x32xf32>
  %0 = qnn.dense %x, %d {name = "ta", source = "tensorflow.MatMul", transpose_a = true} : (tensor<2x32xf32>, tensor<32x32xf32>) -> tensor<2x32xf32>
  %1 = qnn.dense %x, %d {name = "tb", source = "tensorflow.MatMul", transpose_b = true} : (tensor<2x32xf32>, tensor<32x32xf32>) -> tensor<2x32xf32>
  %2 = qnn.dense %x, %d {name = "ay", source = "tensorflow.BatchMatMulV2", adj_y = true} : (tensor<2x32xf32>, tensor<32x32xf32>) -> tensor<2x32xf32>
  func.return %0, %1, %2 : tensor<2x32xf32>, tensor<2x32xf32>, tensor<2x32xf32>
}

// -----

// Rule matmul_transposed does not fire: the flags false or absent.
// CHECK-LABEL: func.func @matmul_not_transposed
// CHECK-NOT: qcc.float
// CHECK: func.return
func.func @matmul_not_transposed(%x: tensor<2x32xf32>) -> (tensor<2x32xf32>, tensor<2x32xf32>) {
  %d = qnn.constant dense<0.5> : tensor<32x32xf32>
  %0 = qnn.dense %x, %d {name = "plain", source = "tensorflow.MatMul", transpose_a = false, transpose_b = false} : (tensor<2x32xf32>, tensor<32x32xf32>) -> tensor<2x32xf32>
  %1 = qnn.dense %x, %d {name = "gemm", source = "onnx.Gemm"} : (tensor<2x32xf32>, tensor<32x32xf32>) -> tensor<2x32xf32>
  func.return %0, %1 : tensor<2x32xf32>, tensor<2x32xf32>
}

// -----

// Rule deconv_dilation fires: dilation 2 (in either dim).
// CHECK-LABEL: func.func @deconv_dilation_2
// CHECK: qnn.conv_transpose %x, %{{.*}} {name = "d22", source = "onnx.ConvTranspose", qcc.float = "deconv_dilation: conv_transpose with dilations [2, 2] is not quantized (only 1)",
// CHECK: qnn.conv_transpose %x, %{{.*}} {name = "d12", source = "onnx.ConvTranspose", qcc.float = "deconv_dilation: conv_transpose with dilations [1, 2] is not quantized (only 1)",
func.func @deconv_dilation_2(%x: tensor<1x32x2x2xf32>) -> (tensor<1x4x4x4xf32>, tensor<1x4x3x4xf32>) {
  %w = qnn.constant dense<0.5> : tensor<32x4x2x2xf32>
  %0 = qnn.conv_transpose %x, %w {name = "d22", source = "onnx.ConvTranspose", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 2, 2>, output_padding = array<i64: 0, 0>, groups = 1 : i64} : (tensor<1x32x2x2xf32>, tensor<32x4x2x2xf32>) -> tensor<1x4x4x4xf32>
  %1 = qnn.conv_transpose %x, %w {name = "d12", source = "onnx.ConvTranspose", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 2>, output_padding = array<i64: 0, 0>, groups = 1 : i64} : (tensor<1x32x2x2xf32>, tensor<32x4x2x2xf32>) -> tensor<1x4x3x4xf32>
  func.return %0, %1 : tensor<1x4x4x4xf32>, tensor<1x4x3x4xf32>
}

// -----

// Rule deconv_dilation does not fire: dilation 1.
// CHECK-LABEL: func.func @deconv_dilation_1
// CHECK-NOT: qcc.float
// CHECK: func.return
func.func @deconv_dilation_1(%x: tensor<1x32x2x2xf32>) -> tensor<1x4x3x3xf32> {
  %w = qnn.constant dense<0.5> : tensor<32x4x2x2xf32>
  %0 = qnn.conv_transpose %x, %w {name = "d11", source = "pytorch.ConvTranspose2d", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, output_padding = array<i64: 0, 0>, groups = 1 : i64} : (tensor<1x32x2x2xf32>, tensor<32x4x2x2xf32>) -> tensor<1x4x3x3xf32>
  func.return %0 : tensor<1x4x3x3xf32>
}

// -----

// Rule conv3d_dilation fires: a 3-d convolution with dilation_d = 2.
// CHECK-LABEL: func.func @conv3d_dilation_d_2
// CHECK: qnn.conv %x, %{{.*}} {name = "c3d", source = "pytorch.Conv3d", qcc.float = "conv3d_dilation: a 3-d convolution needs dilation_d = 1 (dilations [2, 1, 1])",
func.func @conv3d_dilation_d_2(%x: tensor<1x32x3x2x2xf32>) -> tensor<1x4x1x2x2xf32> {
  %w = qnn.constant dense<0.5> : tensor<4x32x2x1x1xf32>
  %0 = qnn.conv %x, %w {name = "c3d", source = "pytorch.Conv3d", strides = array<i64: 1, 1, 1>, pads = array<i64: 0, 0, 0, 0, 0, 0>, dilations = array<i64: 2, 1, 1>, groups = 1 : i64} : (tensor<1x32x3x2x2xf32>, tensor<4x32x2x1x1xf32>) -> tensor<1x4x1x2x2xf32>
  func.return %0 : tensor<1x4x1x2x2xf32>
}

// -----

// Rule conv3d_dilation does not fire: dilation_d = 1 (dilation_h = 2 is allowed), and
// a 2-d convolution with dilation 2.
// CHECK-LABEL: func.func @conv3d_dilation_h_2
// CHECK-NOT: qcc.float
// CHECK: func.return
func.func @conv3d_dilation_h_2(%x: tensor<1x32x3x3x3xf32>, %y: tensor<1x32x3x3xf32>) -> (tensor<1x4x2x1x2xf32>, tensor<1x4x1x1xf32>) {
  %w = qnn.constant dense<0.5> : tensor<4x32x2x2x2xf32>
  %0 = qnn.conv %x, %w {name = "c3h", source = "tensorflow.Conv3D", strides = array<i64: 1, 1, 1>, pads = array<i64: 0, 0, 0, 0, 0, 0>, dilations = array<i64: 1, 2, 1>, groups = 1 : i64} : (tensor<1x32x3x3x3xf32>, tensor<4x32x2x2x2xf32>) -> tensor<1x4x2x1x2xf32>
  %v = qnn.constant dense<0.5> : tensor<4x32x2x2xf32>
  %1 = qnn.conv %y, %v {name = "c2d", source = "onnx.Conv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 2, 2>, groups = 1 : i64} : (tensor<1x32x3x3xf32>, tensor<4x32x2x2xf32>) -> tensor<1x4x1x1xf32>
  func.return %0, %1 : tensor<1x4x2x1x2xf32>, tensor<1x4x1x1xf32>
}

// -----

// Rule padding_zeros fires: PyTorch padding_mode "reflect", recorded as pad_mode.
// CHECK-LABEL: func.func @padding_reflect
// CHECK: qnn.conv %x, %{{.*}} {name = "reflect", source = "pytorch.Conv2d", pad_mode = "reflect", qcc.float = "padding_zeros: padding mode reflect is not supported (zeros only)",
func.func @padding_reflect(%x: tensor<1x32x2x2xf32>) -> tensor<1x4x2x2xf32> {
  %w = qnn.constant dense<0.5> : tensor<4x32x3x3xf32>
  %0 = qnn.conv %x, %w {name = "reflect", source = "pytorch.Conv2d", pad_mode = "reflect", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x32x2x2xf32>, tensor<4x32x3x3xf32>) -> tensor<1x4x2x2xf32>
  func.return %0 : tensor<1x4x2x2xf32>
}

// -----

// Rule padding_zeros does not fire: pad_mode "zeros", or no pad_mode (zeros).
// CHECK-LABEL: func.func @padding_zeros
// CHECK-NOT: qcc.float
// CHECK: func.return
func.func @padding_zeros(%x: tensor<1x32x2x2xf32>) -> (tensor<1x4x2x2xf32>, tensor<1x4x2x2xf32>) {
  %w = qnn.constant dense<0.5> : tensor<4x32x3x3xf32>
  %0 = qnn.conv %x, %w {name = "zeros", source = "pytorch.Conv2d", pad_mode = "zeros", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x32x2x2xf32>, tensor<4x32x3x3xf32>) -> tensor<1x4x2x2xf32>
  %1 = qnn.conv %x, %w {name = "default", source = "pytorch.Conv2d", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x32x2x2xf32>, tensor<4x32x3x3xf32>) -> tensor<1x4x2x2xf32>
  func.return %0, %1 : tensor<1x4x2x2xf32>, tensor<1x4x2x2xf32>
}

// -----

// Rule min_cin fires: Cin = 16 (conv), 16 input features (dense). The
// qcc-legalize-ascend-override.mlir test lifts it.
// CHECK-LABEL: func.func @min_cin_16
// CHECK: qnn.conv %x, %{{.*}} {name = "cin16", source = "onnx.Conv", qcc.float = "min_cin: Cin = 16 <= 16: no speed gain, accuracy risk",
// CHECK: qnn.dense %v, %{{.*}} {name = "k16", source = "onnx.Gemm", qcc.float = "min_cin: Cin = 16 <= 16: no speed gain, accuracy risk"}
func.func @min_cin_16(%x: tensor<1x16x2x2xf32>, %v: tensor<2x16xf32>) -> (tensor<1x8x2x2xf32>, tensor<2x8xf32>) {
  %w = qnn.constant dense<0.5> : tensor<8x16x1x1xf32>
  %0 = qnn.conv %x, %w {name = "cin16", source = "onnx.Conv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x16x2x2xf32>, tensor<8x16x1x1xf32>) -> tensor<1x8x2x2xf32>
  %d = qnn.constant dense<0.5> : tensor<8x16xf32>
  %1 = qnn.dense %v, %d {name = "k16", source = "onnx.Gemm"} : (tensor<2x16xf32>, tensor<8x16xf32>) -> tensor<2x8xf32>
  func.return %0, %1 : tensor<1x8x2x2xf32>, tensor<2x8xf32>
}

// -----

// Rule min_cin does not fire: Cin = 17 and 32; an avg_pool is not selected by it.
// CHECK-LABEL: func.func @min_cin_32
// CHECK-NOT: qcc.float
// CHECK: func.return
func.func @min_cin_32(%x: tensor<1x32x2x2xf32>, %y: tensor<1x17x2x2xf32>, %z: tensor<1x8x2x2xf32>) -> (tensor<1x8x2x2xf32>, tensor<1x8x2x2xf32>, tensor<1x8x1x1xf32>) {
  %w = qnn.constant dense<0.5> : tensor<8x32x1x1xf32>
  %0 = qnn.conv %x, %w {name = "cin32", source = "onnx.Conv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x32x2x2xf32>, tensor<8x32x1x1xf32>) -> tensor<1x8x2x2xf32>
  %v = qnn.constant dense<0.5> : tensor<8x17x1x1xf32>
  %1 = qnn.conv %y, %v {name = "cin17", source = "onnx.Conv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x17x2x2xf32>, tensor<8x17x1x1xf32>) -> tensor<1x8x2x2xf32>
  %2 = qnn.avg_pool %z {name = "pool8", source = "onnx.AveragePool", kernel = array<i64: 2, 2>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = false, count_include_pad = false} : (tensor<1x8x2x2xf32>) -> tensor<1x8x1x1xf32>
  func.return %0, %1, %2 : tensor<1x8x2x2xf32>, tensor<1x8x2x2xf32>, tensor<1x8x1x1xf32>
}
