// RUN: qcc-opt %s --split-input-file --verify-diagnostics | filecheck %s

func.func @conv_channels(%x: tensor<1x3x8x8xf32>, %w: tensor<4x2x3x3xf32>) -> tensor<1x4x6x6xf32> {
  // CHECK: 'qnn.conv': input channels 3 != weight dim 1 (2) x groups (1)
  %0 = qnn.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x2x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return %0 : tensor<1x4x6x6xf32>
}

// -----

func.func @conv_groups(%x: tensor<1x4x8x8xf32>, %w: tensor<3x2x3x3xf32>) -> tensor<1x3x6x6xf32> {
  // CHECK: 'qnn.conv': output channels 3 not divisible by groups 2
  %0 = qnn.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x4x8x8xf32>, tensor<3x2x3x3xf32>) -> tensor<1x3x6x6xf32>
  func.return %0 : tensor<1x3x6x6xf32>
}

// -----

func.func @conv_strides_length(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32> {
  // CHECK: 'qnn.conv': strides has 1 values, expected 2
  %0 = qnn.conv %x, %w {strides = array<i64: 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return %0 : tensor<1x4x6x6xf32>
}

// -----

func.func @conv_result_type(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<1x4x8x8xf32> {
  // CHECK: 'qnn.conv': result type tensor<1x4x8x8xf32> does not match the inferred type tensor<1x4x6x6xf32>
  %0 = qnn.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x8x8xf32>
  func.return %0 : tensor<1x4x8x8xf32>
}

// -----

func.func @conv_bias(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<3xf32>) -> tensor<1x4x6x6xf32> {
  // CHECK: 'qnn.conv': bias shape (3,) must be (4,)
  %0 = qnn.conv %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<3xf32>) -> tensor<1x4x6x6xf32>
  func.return %0 : tensor<1x4x6x6xf32>
}

// -----

func.func @dense_features(%x: tensor<2x16xf32>, %w: tensor<8x15xf32>) -> tensor<2x8xf32> {
  // CHECK: 'qnn.dense': in_features 16 != weight dim 1 (15)
  %0 = qnn.dense %x, %w : (tensor<2x16xf32>, tensor<8x15xf32>) -> tensor<2x8xf32>
  func.return %0 : tensor<2x8xf32>
}

// -----

func.func @batch_norm_lengths(%x: tensor<1x4x2x2xf32>, %c: tensor<4xf32>, %d: tensor<3xf32>) -> tensor<1x4x2x2xf32> {
  // CHECK: 'qnn.batch_norm': var has shape (3,), expected (4,) channels
  %0 = qnn.batch_norm %x, %c, %c, %c, %d {epsilon = 1.0e-05 : f64} : (tensor<1x4x2x2xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<3xf32>) -> tensor<1x4x2x2xf32>
  func.return %0 : tensor<1x4x2x2xf32>
}

// -----

func.func @broadcast(%a: tensor<2x3xf32>, %b: tensor<4xf32>) -> tensor<2x3xf32> {
  // CHECK: 'qnn.add': shapes (2, 3) and (4,) do not broadcast
  %0 = qnn.add %a, %b : (tensor<2x3xf32>, tensor<4xf32>) -> tensor<2x3xf32>
  func.return %0 : tensor<2x3xf32>
}

// -----

func.func @reshape_count(%x: tensor<2x3xf32>) -> tensor<7xf32> {
  // CHECK: 'qnn.reshape': cannot reshape (2, 3) into (7,)
  %0 = qnn.reshape %x {shape = array<i64: 7>} : (tensor<2x3xf32>) -> tensor<7xf32>
  func.return %0 : tensor<7xf32>
}

// -----

func.func @transpose_perm(%x: tensor<2x3xf32>) -> tensor<3x2xf32> {
  // CHECK: 'qnn.transpose': perm (1, 1) is not a permutation of rank 2
  %0 = qnn.transpose %x {perm = array<i64: 1, 1>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
  func.return %0 : tensor<3x2xf32>
}

// -----

func.func @softmax_axis(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  // CHECK: 'qnn.softmax': axis 2 is out of range for rank 2
  %0 = qnn.softmax %x {axis = 2 : i64} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return %0 : tensor<2x3xf32>
}

// -----

func.func @pool_rank(%x: tensor<1x3x8xf32>) -> tensor<1x3x4xf32> {
  // CHECK: 'qnn.max_pool': input rank 3 does not match a 2-d kernel
  %0 = qnn.max_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = false} : (tensor<1x3x8xf32>) -> tensor<1x3x4xf32>
  func.return %0 : tensor<1x3x4xf32>
}

// -----

func.func @symbolic_channels_mismatch(%x: tensor<?x3x8x8xf32>, %w: tensor<4x2x3x3xf32>) -> tensor<?x4x6x6xf32> {
  // CHECK: 'qnn.conv': input channels 3 != weight dim 1 (2) x groups (1)
  %0 = qnn.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<?x3x8x8xf32>, tensor<4x2x3x3xf32>) -> tensor<?x4x6x6xf32>
  func.return %0 : tensor<?x4x6x6xf32>
}

// -----

func.func @symbolic_result_made_static(%x: tensor<?x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<2x4x6x6xf32> {
  // CHECK: 'qnn.conv': result type tensor<2x4x6x6xf32> does not match the inferred type tensor<?x4x6x6xf32>
  %0 = qnn.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<2x4x6x6xf32>
  func.return %0 : tensor<2x4x6x6xf32>
}

// -----

func.func @reshape_two_free_dims(%x: tensor<?x32xf32>) -> tensor<?x?xf32> {
  // CHECK: 'qnn.reshape': shape [-1, -1] may have one -1 and no other negative entry
  %0 = qnn.reshape %x {shape = array<i64: -1, -1>} : (tensor<?x32xf32>) -> tensor<?x?xf32>
  func.return %0 : tensor<?x?xf32>
}

// -----

func.func @reshape_copy_not_zero(%x: tensor<?x32xf32>) -> tensor<?x32xf32> {
  // CHECK: 'qnn.reshape': copy_dims index 0 must be a dim of both shapes and 0 in shape [5, 32]
  %0 = qnn.reshape %x {shape = array<i64: 5, 32>, copy_dims = array<i64: 0>} : (tensor<?x32xf32>) -> tensor<?x32xf32>
  func.return %0 : tensor<?x32xf32>
}

// -----

func.func @gather_elements_larger_indices(%x: tensor<2x8xf32>, %i: tensor<3x8xi64>) -> tensor<3x8xf32> {
  // CHECK: 'qnn.gather_elements': indices shape (3, 8) exceeds input shape (2, 8) off axis 1
  %0 = qnn.gather_elements %x, %i {axis = 1 : i64} : (tensor<2x8xf32>, tensor<3x8xi64>) -> tensor<3x8xf32>
  func.return %0 : tensor<3x8xf32>
}

// -----

func.func @gather_nd_too_many_dims(%x: tensor<2x3xf32>, %i: tensor<4x3xi64>) -> tensor<4xf32> {
  // CHECK: 'qnn.gather_nd': indices address 3 dims of input (2, 3) after 0 batch dims
  %0 = qnn.gather_nd %x, %i {batch_dims = 0 : i64} : (tensor<2x3xf32>, tensor<4x3xi64>) -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// -----

func.func @cumsum_axis(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  // CHECK: 'qnn.cumsum': axis 2 is out of range for rank 2
  %0 = qnn.cumsum %x {axis = 2 : i64, exclusive = false, reverse = false} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return %0 : tensor<2x3xf32>
}

// -----

func.func @argmax_axis(%x: tensor<2x3xf32>) -> tensor<2x1xi64> {
  // CHECK: 'qnn.argmax': axis -3 is out of range for rank 2
  %0 = qnn.argmax %x {axis = -3 : i64, keepdims = true, select_last_index = false} : (tensor<2x3xf32>) -> tensor<2x1xi64>
  func.return %0 : tensor<2x1xi64>
}

// -----

func.func @argmax_result_type(%x: tensor<2x3xf32>) -> tensor<2x1xf32> {
  // CHECK: 'qnn.argmax': result type tensor<2x1xf32> does not match the inferred type tensor<2x1xi64>
  %0 = qnn.argmax %x {axis = 1 : i64, keepdims = true, select_last_index = false} : (tensor<2x3xf32>) -> tensor<2x1xf32>
  func.return %0 : tensor<2x1xf32>
}
