// RUN: qcc-opt %s --split-input-file | qcc-opt --split-input-file | filecheck %s
// Run-time shape ops (qnn_dynamic): shape arithmetic on i64 tensors whose result
// shape an operand's value decides; `dims` is what the type knows.

// BERT's position ids: range(0, seq) from the input's shape, as [1, seq].
// CHECK-LABEL: func.func @position_ids
// CHECK: %[[S:.*]] = qnn.shape_of %{{.*}} : (tensor<?x?xi64>) -> tensor<2xi64>
// CHECK: %[[N:.*]] = qnn.gather %[[S]], %{{.*}} {axis = 0 : i64} : (tensor<2xi64>, tensor<i64>) -> tensor<i64>
// CHECK: %[[R:.*]] = qnn.range %{{.*}}, %[[N]], %{{.*}} {dims = array<i64: -9223372036854775808>} : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
// CHECK: qnn.reshape %[[R]] {{.*}} -> tensor<1x?xi64>
func.func @position_ids(%ids: tensor<?x?xi64>) -> tensor<1x?xi64> {
  %s = qnn.shape_of %ids : (tensor<?x?xi64>) -> tensor<2xi64>
  %one = qnn.constant dense<1> : tensor<i64>
  %zero = qnn.constant dense<0> : tensor<i64>
  %n = qnn.gather %s, %one {axis = 0 : i64} : (tensor<2xi64>, tensor<i64>) -> tensor<i64>
  %r = qnn.range %zero, %n, %one {dims = array<i64: -9223372036854775808>} : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  %p = qnn.reshape %r {shape = array<i64: 1, -1>} : (tensor<?xi64>) -> tensor<1x?xi64>
  func.return %p : tensor<1x?xi64>
}

// -----

// ViT's class token broadcast to the batch; a default mask of ones; a reshape and
// a slice to run-time sizes. Static entries of `dims` stay in the type.
// CHECK-LABEL: func.func @to_runtime_shapes
// CHECK: qnn.dynamic_broadcast {{.*}}dims = array<i64: -9223372036854775808, 1, 8>{{.*}} : (tensor<1x1x8xf32>, tensor<3xi64>) -> tensor<?x1x8xf32>
// CHECK: qnn.fill {{.*}} : (tensor<2xi64>, tensor<1xi64>) -> tensor<?x?xi64>
// CHECK: qnn.dynamic_reshape {{.*}}allowzero = 1 : i64{{.*}} : (tensor<?x?xi64>, tensor<1xi64>) -> tensor<?xi64>
// CHECK: qnn.dynamic_slice {{.*}}axes = array<i64: 1>, steps = array<i64: 1>{{.*}} : (tensor<1x64xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<1x?xi64>
func.func @to_runtime_shapes(%x: tensor<?x5x8xf32>, %cls: tensor<1x1x8xf32>, %table: tensor<1x64xi64>) -> (tensor<?x1x8xf32>, tensor<?xi64>, tensor<1x?xi64>) {
  %s = qnn.shape_of %x : (tensor<?x5x8xf32>) -> tensor<3xi64>
  %b = qnn.dynamic_broadcast %cls, %s {dims = array<i64: -9223372036854775808, 1, 8>} : (tensor<1x1x8xf32>, tensor<3xi64>) -> tensor<?x1x8xf32>
  %s2 = qnn.slice %s {starts = array<i64: 0>, ends = array<i64: 2>, axes = array<i64: 0>, steps = array<i64: 1>} : (tensor<3xi64>) -> tensor<2xi64>
  %v = qnn.constant dense<1> : tensor<1xi64>
  %ones = qnn.fill %s2, %v {dims = array<i64: -9223372036854775808, -9223372036854775808>} : (tensor<2xi64>, tensor<1xi64>) -> tensor<?x?xi64>
  %flat = qnn.constant dense<-1> : tensor<1xi64>
  %f = qnn.dynamic_reshape %ones, %flat {dims = array<i64: -9223372036854775808>, allowzero = 1 : i64} : (tensor<?x?xi64>, tensor<1xi64>) -> tensor<?xi64>
  %zero = qnn.constant dense<0> : tensor<1xi64>
  %len = qnn.slice %s {starts = array<i64: 1>, ends = array<i64: 2>, axes = array<i64: 0>, steps = array<i64: 1>} : (tensor<3xi64>) -> tensor<1xi64>
  %t = qnn.dynamic_slice %table, %zero, %len {dims = array<i64: 1, -9223372036854775808>, axes = array<i64: 1>, steps = array<i64: 1>} : (tensor<1x64xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<1x?xi64>
  func.return %b, %f, %t : tensor<?x1x8xf32>, tensor<?xi64>, tensor<1x?xi64>
}
