// RUN: qcc-opt %s --split-input-file --verify-diagnostics | filecheck %s

func.func @range_not_scalar(%a: tensor<2xi64>, %b: tensor<i64>) -> tensor<?xi64> {
  // CHECK: 'qnn.range': start, limit and delta must be scalars, got tensor<2xi64>
  %0 = qnn.range %a, %b, %b {dims = array<i64: -9223372036854775808>} : (tensor<2xi64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  func.return %0 : tensor<?xi64>
}

// -----

func.func @fill_rank(%s: tensor<2xi64>, %v: tensor<1xf32>) -> tensor<?xf32> {
  // CHECK: 'qnn.fill': dims (?,) have rank 1, the shape operand has length 2
  %0 = qnn.fill %s, %v {dims = array<i64: -9223372036854775808>} : (tensor<2xi64>, tensor<1xf32>) -> tensor<?xf32>
  func.return %0 : tensor<?xf32>
}

// -----

func.func @broadcast_shape_not_integer(%x: tensor<1x8xf32>, %s: tensor<2xf32>) -> tensor<?x8xf32> {
  // CHECK: 'qnn.dynamic_broadcast': shape must be a 1-D integer tensor, got tensor<2xf32>
  %0 = qnn.dynamic_broadcast %x, %s {dims = array<i64: -9223372036854775808, 8>} : (tensor<1x8xf32>, tensor<2xf32>) -> tensor<?x8xf32>
  func.return %0 : tensor<?x8xf32>
}

// -----

func.func @type_disagrees_with_dims(%x: tensor<4xf32>, %s: tensor<2xi64>) -> tensor<2x2xf32> {
  // CHECK: 'qnn.dynamic_reshape': result type tensor<2x2xf32> does not match the inferred type tensor<?x2xf32>
  %0 = qnn.dynamic_reshape %x, %s {dims = array<i64: -9223372036854775808, 2>} : (tensor<4xf32>, tensor<2xi64>) -> tensor<2x2xf32>
  func.return %0 : tensor<2x2xf32>
}
