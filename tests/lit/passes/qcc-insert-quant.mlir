// RUN: qcc-opt %s --split-input-file -p qcc-insert-quant | filecheck %s
// RUN: qcc-opt %s --split-input-file -p 'qcc-insert-quant{config="%S/Inputs/qcc-insert-quant.json"}' | filecheck %s --check-prefix=CFG

// Rules 2 and 3 with the default config: the activation input gets an IFMR
// observer (asymmetric int8), the constant weight a symmetric narrow-range ARQ
// observer per output channel.
// CHECK-LABEL: func.func @main(%x: tensor<1x8x4x4xf32>)
// CHECK: %[[W:.*]] = qnn.constant {{.*}} {name = "conv1.weight"}
// CHECK-NEXT: %[[OX:.*]] = quant.observe %x {kind = "activation", algorithm = "ifmr", bits = 8 : i64, symmetric = false, axis = -1 : i64, narrow_range = false, id = "conv1.input", params = {search_range_start
// CHECK-NEXT: %[[OW:.*]] = quant.observe %[[W]] {kind = "weight", algorithm = "arq", bits = 8 : i64, symmetric = true, axis = 0 : i64, narrow_range = true, id = "conv1.weight"}
// CHECK-NEXT: qnn.conv %[[OX]], %[[OW]] {name = "conv1"
// With a config that skips conv1 (rule 1), nothing is observed.
// CFG-LABEL: func.func @main(%x: tensor<1x8x4x4xf32>)
// CFG-NOT: quant.observe
// CFG: qnn.conv %x,
func.func @main(%x: tensor<1x8x4x4xf32>) -> tensor<1x4x4x4xf32> {
  %w = qnn.constant dense<0.5> : tensor<4x8x1x1xf32> {name = "conv1.weight"}
  %0 = qnn.conv %x, %w {name = "conv1", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x8x4x4xf32>, tensor<4x8x1x1xf32>) -> tensor<1x4x4x4xf32>
  func.return %0 : tensor<1x4x4x4xf32>
}

// -----

// Rule 2 for matmul: both activations observed (.input0, .input1), no weight.
// CHECK-LABEL: func.func @main(%a: tensor<2x4xf32>, %b: tensor<4x3xf32>)
// CHECK-NEXT: %[[A:.*]] = quant.observe %a {{.*}}id = "mm.input0"
// CHECK-NEXT: %[[B:.*]] = quant.observe %b {{.*}}id = "mm.input1"
// CHECK-NEXT: qnn.matmul %[[A]], %[[B]] {name = "mm"}
// CFG-LABEL: func.func @main(%a: tensor<2x4xf32>, %b: tensor<4x3xf32>)
// CFG: quant.observe %a {kind = "activation", algorithm = "minmax", bits = 8 : i64, symmetric = true
func.func @main(%a: tensor<2x4xf32>, %b: tensor<4x3xf32>) -> tensor<2x3xf32> {
  %0 = qnn.matmul %a, %b {name = "mm"} : (tensor<2x4xf32>, tensor<4x3xf32>) -> tensor<2x3xf32>
  func.return %0 : tensor<2x3xf32>
}

// -----

// Must not fire: a weight that is not a constant is not observed (rule 3), a
// non-layer op (relu) gets nothing, and two layers reading one value with the
// same settings share one observer.
// CHECK-LABEL: func.func @main(%x: tensor<2x4xf32>, %w: tensor<3x4xf32>)
// CHECK-NEXT: %[[O:.*]] = quant.observe %x {{.*}}id = "fc1.input"
// CHECK-NEXT: %[[F1:.*]] = qnn.dense %[[O]], %w {name = "fc1"}
// CHECK-NEXT: %[[R:.*]] = qnn.relu %[[F1]]
// CHECK-NOT: quant.observe %x
// CHECK-NEXT: qnn.dense %[[O]], %w {name = "fc2"}
func.func @main(%x: tensor<2x4xf32>, %w: tensor<3x4xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>) {
  %0 = qnn.dense %x, %w {name = "fc1"} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
  %1 = qnn.relu %0 : (tensor<2x3xf32>) -> tensor<2x3xf32>
  %2 = qnn.dense %x, %w {name = "fc2"} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
  func.return %1, %2 : tensor<2x3xf32>, tensor<2x3xf32>
}
