// RUN: not qcc-opt %s 2>&1 | filecheck %s
// CHECK: parse-error-location.mlir:7:{{[0-9]+}}
// CHECK: Expected ')'
// CHECK-NOT: Traceback
func.func @main(%x: tensor<2xf32>) -> tensor<2xf32> {
  // the type list below is missing its closing parenthesis
  %0 = qnn.relu %x : (tensor<2xf32> -> tensor<2xf32>
  func.return %0 : tensor<2xf32>
}
