// RUN: qcc-opt %s --split-input-file | qcc-opt --split-input-file | filecheck %s

// CHECK-LABEL: func.func @conv2d
// CHECK: %[[W:.*]] = qnn.constant dense<1.000000e+00> : tensor<4x3x3x3xf32>
// CHECK: qnn.conv %{{.*}}, %[[W]] {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x4x4xf32>
func.func @conv2d(%x: tensor<1x3x8x8xf32>) -> tensor<1x4x4x4xf32> {
  %w = qnn.constant dense<1.0> : tensor<4x3x3x3xf32>
  %0 = qnn.conv %x, %w {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x4x4xf32>
  func.return %0 : tensor<1x4x4x4xf32>
}

// -----

// CHECK-LABEL: func.func @depthwise_conv1d_with_bias
// CHECK: qnn.conv %{{.*}}, %{{.*}}, %{{.*}} {{.*}}groups = 8 : i64} : (tensor<2x8x16xf32>, tensor<8x1x3xf32>, tensor<8xf32>) -> tensor<2x8x14xf32>
func.func @depthwise_conv1d_with_bias(%x: tensor<2x8x16xf32>, %w: tensor<8x1x3xf32>, %b: tensor<8xf32>) -> tensor<2x8x14xf32> {
  %0 = qnn.conv %x, %w, %b {strides = array<i64: 1>, pads = array<i64: 0, 0>, dilations = array<i64: 1>, groups = 8 : i64} : (tensor<2x8x16xf32>, tensor<8x1x3xf32>, tensor<8xf32>) -> tensor<2x8x14xf32>
  func.return %0 : tensor<2x8x14xf32>
}

// -----

// CHECK-LABEL: func.func @conv3d_dilated
// CHECK: qnn.conv {{.*}} -> tensor<1x2x4x4x4xf32>
func.func @conv3d_dilated(%x: tensor<1x2x8x8x8xf32>, %w: tensor<2x2x3x3x3xf32>) -> tensor<1x2x4x4x4xf32> {
  %0 = qnn.conv %x, %w {strides = array<i64: 1, 1, 1>, pads = array<i64: 0, 0, 0, 0, 0, 0>, dilations = array<i64: 2, 2, 2>, groups = 1 : i64} : (tensor<1x2x8x8x8xf32>, tensor<2x2x3x3x3xf32>) -> tensor<1x2x4x4x4xf32>
  func.return %0 : tensor<1x2x4x4x4xf32>
}

// -----

// CHECK-LABEL: func.func @conv_transpose
// CHECK: qnn.conv_transpose {{.*}}output_padding = array<i64: 1, 1>{{.*}} -> tensor<1x6x16x16xf32>
func.func @conv_transpose(%x: tensor<1x4x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<1x6x16x16xf32> {
  %0 = qnn.conv_transpose %x, %w {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, output_padding = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x4x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x6x16x16xf32>
  func.return %0 : tensor<1x6x16x16xf32>
}

// -----

// CHECK-LABEL: func.func @dense_matmul
// CHECK: %[[D:.*]] = qnn.dense %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x5x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<2x5x8xf32>
// CHECK: qnn.matmul %[[D]], %{{.*}} : (tensor<2x5x8xf32>, tensor<8x3xf32>) -> tensor<2x5x3xf32>
func.func @dense_matmul(%x: tensor<2x5x16xf32>, %w: tensor<8x16xf32>, %b: tensor<8xf32>, %y: tensor<8x3xf32>) -> tensor<2x5x3xf32> {
  %0 = qnn.dense %x, %w, %b : (tensor<2x5x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<2x5x8xf32>
  %1 = qnn.matmul %0, %y : (tensor<2x5x8xf32>, tensor<8x3xf32>) -> tensor<2x5x3xf32>
  func.return %1 : tensor<2x5x3xf32>
}

// -----

// CHECK-LABEL: func.func @pools
// CHECK: qnn.max_pool {{.*}}ceil_mode = true}{{.*}} -> tensor<1x3x4x4xf32>
// CHECK: qnn.avg_pool {{.*}} -> tensor<1x3x2x2xf32>
// CHECK: qnn.global_avg_pool {{.*}} -> tensor<1x3x1x1xf32>
func.func @pools(%x: tensor<1x3x7x7xf32>) -> tensor<1x3x1x1xf32> {
  %0 = qnn.max_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = true} : (tensor<1x3x7x7xf32>) -> tensor<1x3x4x4xf32>
  %1 = qnn.avg_pool %0 {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = false, count_include_pad = false} : (tensor<1x3x4x4xf32>) -> tensor<1x3x2x2xf32>
  %2 = qnn.global_avg_pool %1 : (tensor<1x3x2x2xf32>) -> tensor<1x3x1x1xf32>
  func.return %2 : tensor<1x3x1x1xf32>
}

// -----

// CHECK-LABEL: func.func @norms
// CHECK: qnn.batch_norm {{.*}}epsilon = 1.000000e-03 : f64
// CHECK: qnn.scale {{.*}}axis = 1 : i64
// CHECK: qnn.layer_norm {{.*}}axis = -1 : i64
// CHECK: qnn.softmax {{.*}}axis = 1 : i64
func.func @norms(%x: tensor<2x4x3xf32>, %c: tensor<4xf32>, %l: tensor<3xf32>) -> tensor<2x4x3xf32> {
  %0 = qnn.batch_norm %x, %c, %c, %c, %c {epsilon = 1.0e-03 : f64} : (tensor<2x4x3xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x4x3xf32>
  %1 = qnn.scale %0, %c {axis = 1 : i64} : (tensor<2x4x3xf32>, tensor<4xf32>) -> tensor<2x4x3xf32>
  %2 = qnn.layer_norm %1, %l, %l {axis = -1 : i64, epsilon = 1.0e-05 : f64} : (tensor<2x4x3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<2x4x3xf32>
  %3 = qnn.softmax %2 {axis = 1 : i64} : (tensor<2x4x3xf32>) -> tensor<2x4x3xf32>
  func.return %3 : tensor<2x4x3xf32>
}

// -----

// CHECK-LABEL: func.func @elementwise
// CHECK: qnn.add {{.*}} : (tensor<2x1x3xf32>, tensor<4x1xf32>) -> tensor<2x4x3xf32>
// CHECK: qnn.less {{.*}} -> tensor<2x4x3xi1>
// CHECK: qnn.where {{.*}} -> tensor<2x4x3xf32>
// CHECK: qnn.clip {{.*}}min = 0.000000e+00 : f64, max = 6.000000e+00 : f64
func.func @elementwise(%a: tensor<2x1x3xf32>, %b: tensor<4x1xf32>) -> tensor<2x4x3xf32> {
  %0 = qnn.add %a, %b : (tensor<2x1x3xf32>, tensor<4x1xf32>) -> tensor<2x4x3xf32>
  %1 = qnn.less %0, %b : (tensor<2x4x3xf32>, tensor<4x1xf32>) -> tensor<2x4x3xi1>
  %2 = qnn.where %1, %0, %a : (tensor<2x4x3xi1>, tensor<2x4x3xf32>, tensor<2x1x3xf32>) -> tensor<2x4x3xf32>
  %3 = qnn.clip %2 {min = 0.0 : f64, max = 6.0 : f64} : (tensor<2x4x3xf32>) -> tensor<2x4x3xf32>
  func.return %3 : tensor<2x4x3xf32>
}

// -----

// CHECK-LABEL: func.func @shapes
// CHECK: qnn.reshape {{.*}} -> tensor<6x4xf32>
// CHECK: qnn.transpose {{.*}} -> tensor<4x6xf32>
// CHECK: qnn.slice {{.*}} -> tensor<2x3xf32>
// CHECK: qnn.concat {{.*}} -> tensor<4x3xf32>
// CHECK: %{{.*}}, %{{.*}} = qnn.split {{.*}} -> (tensor<1x3xf32>, tensor<3x3xf32>)
func.func @shapes(%x: tensor<2x3x4xf32>) -> tensor<3x3xf32> {
  %0 = qnn.reshape %x {shape = array<i64: 6, 4>} : (tensor<2x3x4xf32>) -> tensor<6x4xf32>
  %1 = qnn.transpose %0 {perm = array<i64: 1, 0>} : (tensor<6x4xf32>) -> tensor<4x6xf32>
  %2 = qnn.slice %1 {starts = array<i64: 0, 0>, ends = array<i64: 2, 6>, axes = array<i64: 0, 1>, steps = array<i64: 1, 2>} : (tensor<4x6xf32>) -> tensor<2x3xf32>
  %3 = qnn.concat %2, %2 {axis = 0 : i64} : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<4x3xf32>
  %4, %5 = qnn.split %3 {axis = 0 : i64, sizes = array<i64: 1, 3>} : (tensor<4x3xf32>) -> (tensor<1x3xf32>, tensor<3x3xf32>)
  func.return %5 : tensor<3x3xf32>
}

// -----

// CHECK-LABEL: func.func @gather_pad_resize_reduce
// CHECK: qnn.gather {{.*}} -> tensor<1x2x5x5xf32>
// CHECK: qnn.pad {{.*}} -> tensor<1x2x7x7xf32>
// CHECK: qnn.resize {{.*}}mode = "linear"{{.*}} -> tensor<1x2x14x14xf32>
// CHECK: qnn.reduce_mean {{.*}} -> tensor<1x2x1x1xf32>
func.func @gather_pad_resize_reduce(%x: tensor<1x4x5x5xf32>) -> tensor<1x2x1x1xf32> {
  %i = qnn.constant dense<[0, 3]> : tensor<2xi64>
  %0 = qnn.gather %x, %i {axis = 1 : i64} : (tensor<1x4x5x5xf32>, tensor<2xi64>) -> tensor<1x2x5x5xf32>
  %1 = qnn.pad %0 {pads = array<i64: 0, 0, 1, 1, 0, 0, 1, 1>, mode = "constant", value = 0.0 : f64} : (tensor<1x2x5x5xf32>) -> tensor<1x2x7x7xf32>
  %2 = qnn.resize %1 {sizes = array<i64: 1, 2, 14, 14>, mode = "linear", coordinate_transformation_mode = "half_pixel", nearest_mode = "floor"} : (tensor<1x2x7x7xf32>) -> tensor<1x2x14x14xf32>
  %3 = qnn.reduce_mean %2 {axes = array<i64: 2, 3>, keepdims = true} : (tensor<1x2x14x14xf32>) -> tensor<1x2x1x1xf32>
  func.return %3 : tensor<1x2x1x1xf32>
}

// -----

// CHECK-LABEL: func.func @gather_elements_gather_nd_cumsum
// CHECK: qnn.gather_elements {{.*}}axis = 1 : i64{{.*}} -> tensor<1x8xi64>
// CHECK: qnn.gather_nd {{.*}}batch_dims = 1 : i64{{.*}} -> tensor<2x3x5xf32>
// CHECK: qnn.cumsum {{.*}}axis = 1 : i64, exclusive = true, reverse = false{{.*}} -> tensor<2x8xi64>
func.func @gather_elements_gather_nd_cumsum(%ids: tensor<2x8xi64>, %pos: tensor<1x8xi64>, %x: tensor<2x4x5xf32>, %i: tensor<2x3x1xi64>) -> (tensor<1x8xi64>, tensor<2x3x5xf32>, tensor<2x8xi64>) {
  %0 = qnn.gather_elements %ids, %pos {axis = 1 : i64} : (tensor<2x8xi64>, tensor<1x8xi64>) -> tensor<1x8xi64>
  %1 = qnn.gather_nd %x, %i {batch_dims = 1 : i64} : (tensor<2x4x5xf32>, tensor<2x3x1xi64>) -> tensor<2x3x5xf32>
  %2 = qnn.cumsum %ids {axis = 1 : i64, exclusive = true, reverse = false} : (tensor<2x8xi64>) -> tensor<2x8xi64>
  func.return %0, %1, %2 : tensor<1x8xi64>, tensor<2x3x5xf32>, tensor<2x8xi64>
}

// -----

// CHECK-LABEL: func.func @argmax
// CHECK: qnn.argmax {{.*}}axis = 1 : i64, keepdims = true, select_last_index = false{{.*}} -> tensor<2x1x5xi64>
// CHECK: qnn.argmax {{.*}}axis = -1 : i64, keepdims = false, select_last_index = true{{.*}} -> tensor<2x4xi64>
func.func @argmax(%x: tensor<2x4x5xf32>) -> (tensor<2x1x5xi64>, tensor<2x4xi64>) {
  %0 = qnn.argmax %x {axis = 1 : i64, keepdims = true, select_last_index = false} : (tensor<2x4x5xf32>) -> tensor<2x1x5xi64>
  %1 = qnn.argmax %x {axis = -1 : i64, keepdims = false, select_last_index = true} : (tensor<2x4x5xf32>) -> tensor<2x4xi64>
  func.return %0, %1 : tensor<2x1x5xi64>, tensor<2x4xi64>
}
