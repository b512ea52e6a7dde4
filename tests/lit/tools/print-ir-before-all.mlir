// RUN: qcc-opt %s -p canonicalize --print-ir-before-all 2>&1 >/dev/null | filecheck %s

// CHECK: IR before canonicalize
// CHECK: qnn.identity
func.func @main(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = qnn.identity %x : (tensor<4xf32>) -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}
