// RUN: qcc-opt %s -p canonicalize --print-ir-after-all 2>&1 >/dev/null | filecheck %s

// CHECK: IR after canonicalize
// CHECK-NOT: qnn.identity
// CHECK: qnn.relu
func.func @main(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = qnn.identity %x : (tensor<4xf32>) -> tensor<4xf32>
  %1 = qnn.relu %0 : (tensor<4xf32>) -> tensor<4xf32>
  func.return %1 : tensor<4xf32>
}
