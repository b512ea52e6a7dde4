// RUN: qcc-opt %s --split-input-file -p canonicalize | filecheck %s
// RUN: qcc-opt %s --split-input-file -p 'canonicalize,qcc-realize-int8' | filecheck %s --check-prefix=INT8

// CHECK-LABEL: func.func @drop_identity_and_dropout
// CHECK-NEXT: %[[R:.*]] = qnn.relu %x
// CHECK-NEXT: func.return %[[R]]
func.func @drop_identity_and_dropout(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = qnn.identity %x : (tensor<4xf32>) -> tensor<4xf32>
  %1 = qnn.dropout %0 {ratio = 0.5 : f64} : (tensor<4xf32>) -> tensor<4xf32>
  %2 = qnn.relu %1 : (tensor<4xf32>) -> tensor<4xf32>
  func.return %2 : tensor<4xf32>
}

// -----

// CHECK-LABEL: func.func @merge_reshapes
// CHECK-NEXT: %[[R:.*]] = qnn.reshape %x {shape = array<i64: 4, 6>} : (tensor<2x3x4xf32>) -> tensor<4x6xf32>
// CHECK-NEXT: func.return %[[R]]
func.func @merge_reshapes(%x: tensor<2x3x4xf32>) -> tensor<4x6xf32> {
  %0 = qnn.reshape %x {shape = array<i64: 6, 4>} : (tensor<2x3x4xf32>) -> tensor<6x4xf32>
  %1 = qnn.reshape %0 {shape = array<i64: 24>} : (tensor<6x4xf32>) -> tensor<24xf32>
  %2 = qnn.reshape %1 {shape = array<i64: 4, 6>} : (tensor<24xf32>) -> tensor<4x6xf32>
  func.return %2 : tensor<4x6xf32>
}

// -----

// CHECK-LABEL: func.func @reshape_to_same_shape
// CHECK-NOT: qnn.reshape
// CHECK: func.return %x
func.func @reshape_to_same_shape(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %0 = qnn.reshape %x {shape = array<i64: 2, 3>} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return %0 : tensor<2x3xf32>
}

// -----

// CHECK-LABEL: func.func @merge_transposes
// CHECK-NEXT: %[[T:.*]] = qnn.transpose %x {perm = array<i64: 2, 0, 1>} : (tensor<2x3x4xf32>) -> tensor<4x2x3xf32>
// CHECK-NEXT: func.return %[[T]]
func.func @merge_transposes(%x: tensor<2x3x4xf32>) -> tensor<4x2x3xf32> {
  %0 = qnn.transpose %x {perm = array<i64: 1, 2, 0>} : (tensor<2x3x4xf32>) -> tensor<3x4x2xf32>
  %1 = qnn.transpose %0 {perm = array<i64: 1, 2, 0>} : (tensor<3x4x2xf32>) -> tensor<4x2x3xf32>
  func.return %1 : tensor<4x2x3xf32>
}

// -----

// CHECK-LABEL: func.func @inverse_transposes_cancel
// CHECK-NOT: qnn.transpose
// CHECK: func.return %x
func.func @inverse_transposes_cancel(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %0 = qnn.transpose %x {perm = array<i64: 1, 0>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
  %1 = qnn.transpose %0 {perm = array<i64: 1, 0>} : (tensor<3x2xf32>) -> tensor<2x3xf32>
  func.return %1 : tensor<2x3xf32>
}

// -----

// CHECK-LABEL: func.func @fold_constant_arithmetic
// CHECK-NEXT: %[[C:.*]] = qnn.constant dense<[4.000000e+00, 7.000000e+00]> : tensor<2xf32>
// CHECK-NEXT: %[[A:.*]] = qnn.add %x, %[[C]]
// CHECK-NEXT: func.return %[[A]]
func.func @fold_constant_arithmetic(%x: tensor<2xf32>) -> tensor<2xf32> {
  %a = qnn.constant dense<[1.0, 2.0]> : tensor<2xf32>
  %b = qnn.constant dense<[3.0, 5.0]> : tensor<2xf32>
  %0 = qnn.add %a, %b : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  %1 = qnn.add %x, %0 : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  func.return %1 : tensor<2xf32>
}

// -----

// CHECK-LABEL: func.func @fold_weight_transpose
// CHECK-NEXT: %[[W:.*]] = qnn.constant dense<{{\[\[}}1.000000e+00, 3.000000e+00], [2.000000e+00, 4.000000e+00]]> : tensor<2x2xf32>
// CHECK-NEXT: qnn.dense %x, %[[W]]
func.func @fold_weight_transpose(%x: tensor<1x2xf32>) -> tensor<1x2xf32> {
  %w = qnn.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
  %t = qnn.transpose %w {perm = array<i64: 1, 0>} : (tensor<2x2xf32>) -> tensor<2x2xf32>
  %0 = qnn.dense %x, %t : (tensor<1x2xf32>, tensor<2x2xf32>) -> tensor<1x2xf32>
  func.return %0 : tensor<1x2xf32>
}

// -----

// CHECK-LABEL: func.func @dead_code
// CHECK-NOT: qnn.sigmoid
// CHECK: func.return %x
func.func @dead_code(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = qnn.sigmoid %x : (tensor<4xf32>) -> tensor<4xf32>
  func.return %x : tensor<4xf32>
}

// -----

// Must not fire: a reshape of an activation that changes the shape stays, and
// ops on non-constant operands are not folded.
// CHECK-LABEL: func.func @no_rewrite
// CHECK-NEXT: qnn.reshape
// CHECK-NEXT: qnn.transpose
// CHECK-NEXT: qnn.add
func.func @no_rewrite(%x: tensor<2x3xf32>, %y: tensor<3x2xf32>) -> tensor<3x2xf32> {
  %0 = qnn.reshape %x {shape = array<i64: 3, 2>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
  %1 = qnn.transpose %0 {perm = array<i64: 1, 0>} : (tensor<3x2xf32>) -> tensor<2x3xf32>
  %2 = qnn.add %1, %x : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
  %3 = qnn.reshape %2 {shape = array<i64: 3, 2>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
  func.return %3 : tensor<3x2xf32>
}

// -----

// Must not fire: quant ops never fold. A weight's observer stays on the constant
// for qcc-calibrate (canonicalize after qcc-insert-quant used to delete it).
// CHECK-LABEL: func.func @weight_observer
// CHECK: %[[W:.*]] = qnn.constant
// CHECK: quant.observe %x
// CHECK: %[[WO:.*]] = quant.observe %[[W]] {kind = "weight"
// CHECK: qnn.dense %{{.*}}, %[[WO]] {name = "fc"}
func.func @weight_observer(%x: tensor<2x4xf32> {qnn.name = "x"}) -> tensor<2x2xf32> {
  %w = qnn.constant dense<[[0.5, -1.27, 0.25, 0.0], [0.1, 0.2, -0.3, 0.635]]> : tensor<2x4xf32> {name = "fc.weight"}
  %0 = quant.observe %x {kind = "activation", algorithm = "minmax", bits = 8 : i64, symmetric = false, axis = -1 : i64, narrow_range = false, id = "fc.input"} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  %1 = quant.observe %w {kind = "weight", algorithm = "arq", bits = 8 : i64, symmetric = true, axis = 0 : i64, narrow_range = true, id = "fc.weight"} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  %2 = qnn.dense %0, %1 {name = "fc"} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x2xf32>
  func.return %2 : tensor<2x2xf32>
}

// -----

// Must not fire: the weight's fake_quant (the module as qcc-calibrate leaves it:
// the parameters are the ones worked out by hand in qcc-calibrate.mlir) stays, so
// canonicalize then qcc-realize-int8 realizes the layer in integers (the weight
// used to fold into a float constant and the layer stayed float).
// CHECK-LABEL: func.func @weight_fake_quant
// CHECK: %[[WQ:.*]] = quant.fake_quant %w {id = "fc.weight"
// CHECK: qnn.dense %{{.*}}, %[[WQ]] {name = "fc"}
// INT8-LABEL: func.func @weight_fake_quant
// INT8: %[[X:.*]] = quant.quantize %x {qtype = !quant.uniform<i8:f32, 0.01568627450980392:-64>}
// INT8: %[[WQ:.*]] = quant.quantize %w {qtype = !quant.uniform<i8<-127:127>:f32:0, {0.009999999849815068,0.004999999924907534}>}
// INT8: %[[Y:.*]] = qnn.dense %[[X]], %[[WQ]] {name = "fc"} : ({{.*}}) -> tensor<2x2x!quant.uniform<i32:f32:1, {{.*}}>>
// INT8: quant.dequantize %[[Y]]
// INT8-NOT: quant.fake_quant
func.func @weight_fake_quant(%x: tensor<2x4xf32> {qnn.name = "x"}) -> tensor<2x2xf32> {
  %w = qnn.constant dense<[[0.5, -1.27, 0.25, 0.0], [0.1, 0.2, -0.3, 0.635]]> : tensor<2x4xf32> {name = "fc.weight"}
  %0 = quant.fake_quant %x {id = "fc.input", qtype = !quant.uniform<i8:f32, 0.01568627450980392:-64>} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  %1 = quant.fake_quant %w {id = "fc.weight", qtype = !quant.uniform<i8<-127:127>:f32:0, {0.009999999849815068,0.004999999924907534}>} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  %2 = qnn.dense %0, %1 {name = "fc"} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x2xf32>
  func.return %2 : tensor<2x2xf32>
}

// -----

// A dim the outer reshape copies was copied by the inner one: it is the input's dim.
// CHECK-LABEL: func.func @merge_reshapes_copying_a_symbolic_dim
// CHECK-NEXT: %[[R:.*]] = qnn.reshape %x {shape = array<i64: 0, 2, 16>, copy_dims = array<i64: 0>} : (tensor<?x4x8xf32>) -> tensor<?x2x16xf32>
// CHECK-NEXT: func.return %[[R]]
func.func @merge_reshapes_copying_a_symbolic_dim(%x: tensor<?x4x8xf32>) -> tensor<?x2x16xf32> {
  %0 = qnn.reshape %x {shape = array<i64: 0, 32>, copy_dims = array<i64: 0>} : (tensor<?x4x8xf32>) -> tensor<?x32xf32>
  %1 = qnn.reshape %0 {shape = array<i64: 0, 2, 16>, copy_dims = array<i64: 0>} : (tensor<?x32xf32>) -> tensor<?x2x16xf32>
  func.return %1 : tensor<?x2x16xf32>
}

// -----

// Not merged: the outer reshape copies dim 0 of [B*S, 8], which is not x's dim 0.
// CHECK-LABEL: func.func @keep_reshapes_copying_a_merged_dim
// CHECK-NEXT: %[[A:.*]] = qnn.reshape %x {shape = array<i64: -1, 8>}
// CHECK-NEXT: %[[B:.*]] = qnn.reshape %[[A]] {shape = array<i64: 0, 2, 4>, copy_dims = array<i64: 0>}
// CHECK-NEXT: func.return %[[B]]
func.func @keep_reshapes_copying_a_merged_dim(%x: tensor<?x?x8xf32>) -> tensor<?x2x4xf32> {
  %0 = qnn.reshape %x {shape = array<i64: -1, 8>} : (tensor<?x?x8xf32>) -> tensor<?x8xf32>
  %1 = qnn.reshape %0 {shape = array<i64: 0, 2, 4>, copy_dims = array<i64: 0>} : (tensor<?x8xf32>) -> tensor<?x2x4xf32>
  func.return %1 : tensor<?x2x4xf32>
}

// -----

// Run-time shape arithmetic folds where the shapes are static: the shape of a
// static value is a constant, and so is everything computed from it.
// CHECK-LABEL: func.func @fold_static_shape_arithmetic
// CHECK-NOT: qnn.shape_of
// CHECK-NOT: qnn.range
// CHECK-NOT: qnn.dynamic_broadcast
// CHECK: %[[C:.*]] = qnn.constant dense<{{\[}}[0, 1, 2, 3]]> : tensor<1x4xi64>
// CHECK: func.return %[[C]]
func.func @fold_static_shape_arithmetic(%x: tensor<2x4xf32>) -> tensor<1x4xi64> {
  %s = qnn.shape_of %x : (tensor<2x4xf32>) -> tensor<2xi64>
  %one = qnn.constant dense<1> : tensor<i64>
  %zero = qnn.constant dense<0> : tensor<i64>
  %n = qnn.gather %s, %one {axis = 0 : i64} : (tensor<2xi64>, tensor<i64>) -> tensor<i64>
  %r = qnn.range %zero, %n, %one {dims = array<i64: 4>} : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<4xi64>
  %shape = qnn.constant dense<[1, 4]> : tensor<2xi64>
  %b = qnn.dynamic_broadcast %r, %shape {dims = array<i64: 1, 4>} : (tensor<4xi64>, tensor<2xi64>) -> tensor<1x4xi64>
  func.return %b : tensor<1x4xi64>
}

// -----

// A symbolic dim keeps the computation in the graph.
// CHECK-LABEL: func.func @keep_symbolic_shape_arithmetic
// CHECK: qnn.shape_of
// CHECK: qnn.range {{.*}} -> tensor<?xi64>
func.func @keep_symbolic_shape_arithmetic(%x: tensor<?x4xf32>) -> tensor<?xi64> {
  %s = qnn.shape_of %x : (tensor<?x4xf32>) -> tensor<2xi64>
  %zero = qnn.constant dense<0> : tensor<i64>
  %one = qnn.constant dense<1> : tensor<i64>
  %n = qnn.gather %s, %zero {axis = 0 : i64} : (tensor<2xi64>, tensor<i64>) -> tensor<i64>
  %r = qnn.range %zero, %n, %one {dims = array<i64: -9223372036854775808>} : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  func.return %r : tensor<?xi64>
}
