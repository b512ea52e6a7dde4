// RUN: not qcc-opt %s -p no-such-pass 2>&1 | filecheck %s
// CHECK: error: {{.*}}no-such-pass
// CHECK-NOT: Traceback
func.func @main(%x: tensor<2xf32>) -> tensor<2xf32> {
  func.return %x : tensor<2xf32>
}
