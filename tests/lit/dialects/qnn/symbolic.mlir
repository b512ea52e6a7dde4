// RUN: qcc-opt %s --split-input-file | qcc-opt --split-input-file | filecheck %s
// Symbolic dims (`?`): result types inferred through conv, pool, dense, reshape
// (copy_dims and -1), broadcast (-1), concat and slice; the source's dim names ride on
// the arguments and results as `qnn.dims`.

// CHECK-LABEL: func.func @cnn
// CHECK-SAME: (%{{.*}}: tensor<?x3x8x8xf32> {qnn.name = "x", qnn.dims = ["batch", "", "", ""]}) -> (tensor<?x4xf32> {qnn.name = "y", qnn.dims = ["batch", ""]})
// CHECK: qnn.conv {{.*}} -> tensor<?x4x4x4xf32>
// CHECK: qnn.max_pool {{.*}} -> tensor<?x4x2x2xf32>
// CHECK: qnn.reshape {{.*}}shape = array<i64: 0, 16>, copy_dims = array<i64: 0>{{.*}} -> tensor<?x16xf32>
// CHECK: qnn.dense {{.*}} -> tensor<?x4xf32>
func.func @cnn(%x: tensor<?x3x8x8xf32> {qnn.name = "x", qnn.dims = ["batch", "", "", ""]}) -> (tensor<?x4xf32> {qnn.name = "y", qnn.dims = ["batch", ""]}) {
  %w = qnn.constant dense<1.0> : tensor<4x3x3x3xf32>
  %0 = qnn.conv %x, %w {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<?x4x4x4xf32>
  %1 = qnn.max_pool %0 {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = false, dilations = array<i64: 1, 1>} : (tensor<?x4x4x4xf32>) -> tensor<?x4x2x2xf32>
  %2 = qnn.reshape %1 {shape = array<i64: 0, 16>, copy_dims = array<i64: 0>} : (tensor<?x4x2x2xf32>) -> tensor<?x16xf32>
  %fw = qnn.constant dense<0.5> : tensor<4x16xf32>
  %3 = qnn.dense %2, %fw : (tensor<?x16xf32>, tensor<4x16xf32>) -> tensor<?x4xf32>
  func.return %3 : tensor<?x4xf32>
}

// -----

// A reshape with two copied symbolic dims, a -1 that the element count decides
// statically once the copied dims cancel, and a -1 left symbolic.
// CHECK-LABEL: func.func @heads
// CHECK: qnn.reshape {{.*}} -> tensor<?x?x4x8xf32>
// CHECK: qnn.reshape {{.*}} -> tensor<?x?x32xf32>
// CHECK: qnn.reshape {{.*}} -> tensor<?x32xf32>
func.func @heads(%x: tensor<?x?x32xf32>) -> tensor<?x32xf32> {
  %0 = qnn.reshape %x {shape = array<i64: 0, 0, 4, -1>, copy_dims = array<i64: 0, 1>} : (tensor<?x?x32xf32>) -> tensor<?x?x4x8xf32>
  %1 = qnn.reshape %0 {shape = array<i64: 0, 0, -1>, copy_dims = array<i64: 0, 1>} : (tensor<?x?x4x8xf32>) -> tensor<?x?x32xf32>
  %2 = qnn.reshape %1 {shape = array<i64: -1, 32>} : (tensor<?x?x32xf32>) -> tensor<?x32xf32>
  func.return %2 : tensor<?x32xf32>
}

// -----

// Broadcasting: ? with 1 stays ?, ? with a static n is n; a broadcast's -1 keeps
// the input's dim; concat along a ? axis is ?; a slice from a ? dim with static
// bounds has a static size, one to the end is ?.
// CHECK-LABEL: func.func @broadcast_concat_slice
// CHECK: qnn.add {{.*}} -> tensor<?x?x32xf32>
// CHECK: qnn.mul {{.*}} -> tensor<4x?x32xf32>
// CHECK: qnn.broadcast {{.*}} -> tensor<?x?x32xf32>
// CHECK: qnn.concat {{.*}} -> tensor<?x?x32xf32>
// CHECK: qnn.slice {{.*}} -> tensor<?x1x32xf32>
// CHECK: qnn.slice {{.*}} -> tensor<?x?x32xf32>
func.func @broadcast_concat_slice(%x: tensor<?x?x32xf32>, %m: tensor<?x1x32xf32>, %n: tensor<4x1x1xf32>) -> (tensor<?x1x32xf32>, tensor<?x?x32xf32>, tensor<4x?x32xf32>) {
  %0 = qnn.add %x, %m : (tensor<?x?x32xf32>, tensor<?x1x32xf32>) -> tensor<?x?x32xf32>
  %1 = qnn.mul %0, %n : (tensor<?x?x32xf32>, tensor<4x1x1xf32>) -> tensor<4x?x32xf32>
  %2 = qnn.broadcast %m {shape = array<i64: -1, 1, 1>} : (tensor<?x1x32xf32>) -> tensor<?x1x32xf32>
  %3 = qnn.broadcast %2 {shape = array<i64: 1, 1, 1>} : (tensor<?x1x32xf32>) -> tensor<?x1x32xf32>
  %b = qnn.broadcast %x {shape = array<i64: -1, -1, 32>} : (tensor<?x?x32xf32>) -> tensor<?x?x32xf32>
  %4 = qnn.concat %b, %3 {axis = 1 : i64} : (tensor<?x?x32xf32>, tensor<?x1x32xf32>) -> tensor<?x?x32xf32>
  %5 = qnn.slice %4 {starts = array<i64: 0>, ends = array<i64: 1>, axes = array<i64: 1>, steps = array<i64: 1>} : (tensor<?x?x32xf32>) -> tensor<?x1x32xf32>
  %6 = qnn.slice %4 {starts = array<i64: 1>, ends = array<i64: 4611686018427387904>, axes = array<i64: 1>, steps = array<i64: 1>} : (tensor<?x?x32xf32>) -> tensor<?x?x32xf32>
  func.return %5, %6, %1 : tensor<?x1x32xf32>, tensor<?x?x32xf32>, tensor<4x?x32xf32>
}

// -----

// A resize keeps the symbolic batch it does not resize (size -1).
// CHECK-LABEL: func.func @resize_symbolic_batch
// CHECK: qnn.resize {{.*}}sizes = array<i64: -1, 4, 16, 16>{{.*}} -> tensor<?x4x16x16xf32>
func.func @resize_symbolic_batch(%x: tensor<?x4x8x8xf32>) -> tensor<?x4x16x16xf32> {
  %0 = qnn.resize %x {sizes = array<i64: -1, 4, 16, 16>, mode = "nearest", coordinate_transformation_mode = "asymmetric", nearest_mode = "floor"} : (tensor<?x4x8x8xf32>) -> tensor<?x4x16x16xf32>
  func.return %0 : tensor<?x4x16x16xf32>
}
