// RUN: qcc-opt %s --split-input-file -p 'qcc-legalize-ascend,qcc-insert-quant' | filecheck %s
// RUN: qcc-opt %s --split-input-file -p qcc-insert-quant | filecheck %s --check-prefix=HAND

// The decisions live on the IR and qcc-insert-quant reads them there: cin8 stays
// float (qcc.float, min_cin), so it gets no observer; the dense layer's weight is per
// tensor on Ascend (qcc.legal channel_wise = false), so its weight observer has axis
// -1 although the default config says per channel; cin32 keeps per-channel weights.
// CHECK-LABEL: func.func @main
// CHECK-NOT: quant.observe %x
// CHECK: qnn.conv %x, %{{.*}} {name = "cin8", source = "onnx.Conv", qcc.float = "min_cin: Cin = 8 <= 16: no speed gain, accuracy risk"
// CHECK: quant.observe %{{.*}} {kind = "weight", algorithm = "arq", bits = 8 : i64, symmetric = true, axis = 0 : i64, narrow_range = true, id = "cin32.weight"}
// CHECK: quant.observe %{{.*}} {kind = "weight", algorithm = "arq", bits = 8 : i64, symmetric = true, axis = -1 : i64, narrow_range = true, id = "fc.weight"}
// CHECK: qnn.dense {{.*}}name = "fc"
func.func @main(%x: tensor<1x8x2x2xf32>, %y: tensor<1x32x2x2xf32>, %v: tensor<2x32xf32>) -> (tensor<1x8x2x2xf32>, tensor<1x8x2x2xf32>, tensor<2x4xf32>) {
  %w = qnn.constant dense<0.5> : tensor<8x8x1x1xf32>
  %0 = qnn.conv %x, %w {name = "cin8", source = "onnx.Conv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x8x2x2xf32>, tensor<8x8x1x1xf32>) -> tensor<1x8x2x2xf32>
  %w2 = qnn.constant dense<0.5> : tensor<8x32x1x1xf32>
  %1 = qnn.conv %y, %w2 {name = "cin32", source = "onnx.Conv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x32x2x2xf32>, tensor<8x32x1x1xf32>) -> tensor<1x8x2x2xf32>
  %d = qnn.constant dense<0.5> : tensor<4x32xf32>
  %2 = qnn.dense %v, %d {name = "fc", source = "onnx.Gemm"} : (tensor<2x32xf32>, tensor<4x32xf32>) -> tensor<2x4xf32>
  func.return %0, %1, %2 : tensor<1x8x2x2xf32>, tensor<1x8x2x2xf32>, tensor<2x4xf32>
}

// -----

// Decisions written by hand (as a target would): qcc.legal replaces the config's
// settings it names (here 4-bit per-tensor weights, symmetric activations), the
// others (algorithms, params) stay the config's; qcc.float keeps a layer float.
// HAND-LABEL: func.func @hand
// HAND: quant.observe %v {kind = "activation", algorithm = "ifmr", bits = 8 : i64, symmetric = true, axis = -1 : i64, narrow_range = false, id = "fc.input", params = {search_range_start
// HAND: quant.observe %{{.*}} {kind = "weight", algorithm = "arq", bits = 4 : i64, symmetric = true, axis = -1 : i64, narrow_range = true, id = "fc.weight"}
// HAND-NOT: quant.observe
// HAND: qnn.dense {{.*}}name = "kept"
func.func @hand(%v: tensor<2x32xf32>) -> (tensor<2x4xf32>, tensor<2x4xf32>) {
  %d = qnn.constant dense<0.5> : tensor<4x32xf32>
  %0 = qnn.dense %v, %d {name = "fc", qcc.legal = {weight = {bits = 4 : i64, channel_wise = false}, activation = {symmetric = true}}} : (tensor<2x32xf32>, tensor<4x32xf32>) -> tensor<2x4xf32>
  %1 = qnn.dense %v, %d {name = "kept", qcc.float = "min_cin: by hand"} : (tensor<2x32xf32>, tensor<4x32xf32>) -> tensor<2x4xf32>
  func.return %0, %1 : tensor<2x4xf32>, tensor<2x4xf32>
}
