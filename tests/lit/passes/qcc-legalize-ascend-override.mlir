// RUN: qcc-opt %s --split-input-file -p 'qcc-legalize-ascend{override="min_cin"}' | filecheck %s
// RUN: qcc-opt %s --split-input-file -p 'qcc-legalize-ascend{override="min_cin" remarks=true}' 2>&1 >/dev/null | filecheck %s --check-prefix=REMARK
// RUN: not qcc-opt %s --split-input-file -p 'qcc-legalize-ascend{override="padding_zeros"}' 2>&1 | filecheck %s --check-prefix=HARD
// RUN: not qcc-opt %s --split-input-file -p 'qcc-legalize-ascend{override="min_cn"}' 2>&1 | filecheck %s --check-prefix=UNKNOWN

// Rule min_cin is overridable: with override="min_cin" a Cin = 16 layer quantizes
// (a remark says the rule was lifted) and gets the target's quant settings
// (qcc.legal). Other rules still fire on it.
// CHECK-LABEL: func.func @min_cin_overridden
// CHECK: qnn.conv %x, %{{.*}} {name = "cin16", source = "onnx.Conv", qcc.legal = {weight = {bits = 8 : i64, symmetric = true, channel_wise = true}, activation = {bits = 8 : i64}}, strides
// CHECK: qnn.conv %x, %{{.*}} {name = "cin16_reflect", source = "pytorch.Conv2d", pad_mode = "reflect", qcc.float = "padding_zeros: padding mode reflect is not supported (zeros only)",
// REMARK: legalize: cin16: quantized anyway (override): min_cin: Cin = 16 <= 16: no speed gain, accuracy risk
// REMARK-NEXT: legalize: cin16_reflect: stays float: padding_zeros: padding mode reflect is not supported (zeros only)
// HARD: error: qcc-legalize-ascend: rule padding_zeros of target ascend is not overridable (overridable: min_cin)
// UNKNOWN: error: qcc-legalize-ascend: target ascend has no rule 'min_cn'; did you mean 'min_cin'?
// HARD-NOT: Traceback
// UNKNOWN-NOT: Traceback
func.func @min_cin_overridden(%x: tensor<1x16x2x2xf32>) -> (tensor<1x8x2x2xf32>, tensor<1x8x2x2xf32>) {
  %w = qnn.constant dense<0.5> : tensor<8x16x1x1xf32>
  %0 = qnn.conv %x, %w {name = "cin16", source = "onnx.Conv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x16x2x2xf32>, tensor<8x16x1x1xf32>) -> tensor<1x8x2x2xf32>
  %1 = qnn.conv %x, %w {name = "cin16_reflect", source = "pytorch.Conv2d", pad_mode = "reflect", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x16x2x2xf32>, tensor<8x16x1x1xf32>) -> tensor<1x8x2x2xf32>
  func.return %0, %1 : tensor<1x8x2x2xf32>, tensor<1x8x2x2xf32>
}
