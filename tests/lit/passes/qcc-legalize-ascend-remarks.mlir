// RUN: qcc-opt %s -p 'qcc-legalize-ascend{remarks=true}' 2>&1 >/dev/null | filecheck %s
// RUN: qcc-opt %s -p qcc-legalize-ascend 2>&1 >/dev/null | filecheck %s --check-prefix=QUIET --allow-empty

// remarks=true prints one line per layer that stays float, naming the rule, and one
// per config setting the target changes (dense weights are per tensor on Ascend).
// CHECK: legalize: cin8: stays float: min_cin: Cin = 8 <= 16: no speed gain, accuracy risk
// CHECK-NEXT: legalize: fc: weight channel_wise true -> false (target ascend: qnn.dense)
// CHECK-NOT: legalize:
// QUIET-NOT: legalize:
func.func @main(%x: tensor<1x8x2x2xf32>, %v: tensor<2x32xf32>) -> (tensor<1x8x2x2xf32>, tensor<2x4xf32>) {
  %w = qnn.constant dense<0.5> : tensor<8x8x1x1xf32>
  %0 = qnn.conv %x, %w {name = "cin8", source = "onnx.Conv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x8x2x2xf32>, tensor<8x8x1x1xf32>) -> tensor<1x8x2x2xf32>
  %d = qnn.constant dense<0.5> : tensor<4x32xf32>
  %1 = qnn.dense %v, %d {name = "fc", source = "onnx.Gemm"} : (tensor<2x32xf32>, tensor<4x32xf32>) -> tensor<2x4xf32>
  func.return %0, %1 : tensor<1x8x2x2xf32>, tensor<2x4xf32>
}
