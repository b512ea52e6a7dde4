// RUN: not qcc-opt %s 2>&1 | filecheck %s
// CHECK: error: {{.*}}verify-error-exit-status.mlir:5: 'qnn.reshape': cannot reshape (2, 3) into (7,)
// CHECK-NOT: Traceback
func.func @main(%x: tensor<2x3xf32>) -> tensor<7xf32> {
  %0 = qnn.reshape %x {shape = array<i64: 7>} : (tensor<2x3xf32>) -> tensor<7xf32>
  func.return %0 : tensor<7xf32>
}
