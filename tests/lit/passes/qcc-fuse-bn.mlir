// RUN: qcc-opt %s --split-input-file -p 'qcc-fuse-bn{skip_layers="skipped"}' | filecheck %s

// Rule 1: conv + BN -> conv; the conv keeps its name, a bias appears.
// CHECK-LABEL: func.func @conv_bn
// CHECK-NEXT: %[[W:.*]] = qnn.constant {{.*}} : tensor<3x2x1x1xf32> {name = "c1.weight_fused"}
// CHECK-NEXT: %[[B:.*]] = qnn.constant {{.*}} : tensor<3xf32> {name = "c1.bias_fused"}
// CHECK-NEXT: %[[Y:.*]] = qnn.conv %x, %[[W]], %[[B]] {name = "c1",
// CHECK-NOT: qnn.batch_norm
// CHECK-NEXT: func.return %[[Y]]
func.func @conv_bn(%x: tensor<1x2x4x4xf32>) -> tensor<1x3x4x4xf32> {
  %w = qnn.constant dense<[[[[0.25]], [[0.79]]], [[[0.55]], [[-0.55]]], [[[-0.40]], [[0.75]]]]> : tensor<3x2x1x1xf32>
  %0 = qnn.conv %x, %w {name = "c1", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>) -> tensor<1x3x4x4xf32>
  %g = qnn.constant dense<[-0.99, 0.64, 0.59]> : tensor<3xf32>
  %b = qnn.constant dense<[-0.06, -0.39, -0.44]> : tensor<3xf32>
  %m = qnn.constant dense<[-0.49, -0.11, 0.01]> : tensor<3xf32>
  %v = qnn.constant dense<[1.05, 1.50, 1.29]> : tensor<3xf32>
  %1 = qnn.batch_norm %0, %g, %b, %m, %v {name = "bn1", epsilon = 1.0e-05 : f64} : (tensor<1x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x4x4xf32>
  func.return %1 : tensor<1x3x4x4xf32>
}

// -----

// Rules 1 and 5: conv (with bias, padded) + BN + Scale -> one conv.
// CHECK-LABEL: func.func @conv_bn_scale
// CHECK: %[[W:.*]] = qnn.constant {{.*}} {name = "c2.weight_fused"}
// CHECK-NEXT: %[[B:.*]] = qnn.constant {{.*}} {name = "c2.bias_fused"}
// CHECK-NEXT: %[[Y:.*]] = qnn.conv %x, %[[W]], %[[B]] {name = "c2", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>
// CHECK-NOT: qnn.batch_norm
// CHECK-NOT: qnn.scale
// CHECK-NEXT: func.return %[[Y]]
func.func @conv_bn_scale(%x: tensor<1x2x5x5xf32>) -> tensor<1x3x5x5xf32> {
  %w = qnn.constant dense<[[[[0.25, 0.79, 0.55], [-0.55, -0.40, 0.75], [-0.99, 0.64, 0.59]], [[-0.06, -0.39, -0.44], [-0.49, -0.11, 0.01], [0.11, 0.99, 0.59]]], [[[0.24, 0.98, -0.57], [-0.68, 0.23, -0.91], [-0.93, 0.03, -0.07]], [[0.83, 0.26, 0.03], [-0.01, -0.50, -0.98], [-0.62, 0.38, -0.60]]], [[[-0.26, -0.99, 0.66], [-0.69, -0.46, 0.76], [0.02, 0.69, 0.28]], [[0.48, -0.82, 0.08], [0.02, 0.74, -0.28], [0.20, -0.88, -0.22]]]]> : tensor<3x2x3x3xf32>
  %cb = qnn.constant dense<[-0.35, -0.70, 0.63]> : tensor<3xf32>
  %0 = qnn.conv %x, %w, %cb {name = "c2", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x5x5xf32>, tensor<3x2x3x3xf32>, tensor<3xf32>) -> tensor<1x3x5x5xf32>
  %g = qnn.constant dense<[-0.24, 0.96, 0.18]> : tensor<3xf32>
  %b = qnn.constant dense<[0.21, 0.28, 0.35]> : tensor<3xf32>
  %m = qnn.constant dense<[-0.70, -0.12, -0.52]> : tensor<3xf32>
  %v = qnn.constant dense<[0.90, 0.60, 1.47]> : tensor<3xf32>
  %1 = qnn.batch_norm %0, %g, %b, %m, %v {name = "bn2", epsilon = 1.0e-05 : f64} : (tensor<1x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x5x5xf32>
  %s = qnn.constant dense<[-0.57, 0.34, -0.40]> : tensor<3xf32>
  %t = qnn.constant dense<[0.75, 0.32, -0.74]> : tensor<3xf32>
  %2 = qnn.scale %1, %s, %t {name = "sc2", axis = 1 : i64} : (tensor<1x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x5x5xf32>
  func.return %2 : tensor<1x3x5x5xf32>
}

// -----

// Rule 1 with groups = C: depthwise conv + BN -> depthwise conv.
// CHECK-LABEL: func.func @depthwise_conv_bn
// CHECK: %[[W:.*]] = qnn.constant {{.*}} : tensor<4x1x3x3xf32> {name = "dw.weight_fused"}
// CHECK-NEXT: %[[B:.*]] = qnn.constant {{.*}} {name = "dw.bias_fused"}
// CHECK-NEXT: %[[Y:.*]] = qnn.conv %x, %[[W]], %[[B]] {name = "dw", {{.*}} groups = 4 : i64}
// CHECK-NEXT: %[[R:.*]] = qnn.relu %[[Y]]
// CHECK-NEXT: func.return %[[R]]
func.func @depthwise_conv_bn(%x: tensor<1x4x5x5xf32>) -> tensor<1x4x5x5xf32> {
  %w = qnn.constant dense<[[[[0.25, 0.79, 0.55], [-0.55, -0.40, 0.75], [-0.99, 0.64, 0.59]]], [[[-0.06, -0.39, -0.44], [-0.49, -0.11, 0.01], [0.11, 0.99, 0.59]]], [[[0.24, 0.98, -0.57], [-0.68, 0.23, -0.91], [-0.93, 0.03, -0.07]]], [[[0.83, 0.26, 0.03], [-0.01, -0.50, -0.98], [-0.62, 0.38, -0.60]]]]> : tensor<4x1x3x3xf32>
  %0 = qnn.conv %x, %w {name = "dw", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64} : (tensor<1x4x5x5xf32>, tensor<4x1x3x3xf32>) -> tensor<1x4x5x5xf32>
  %g = qnn.constant dense<[-0.26, -0.99, 0.66, -0.69]> : tensor<4xf32>
  %b = qnn.constant dense<[-0.46, 0.76, 0.02, 0.69]> : tensor<4xf32>
  %m = qnn.constant dense<[0.28, 0.48, -0.82, 0.08]> : tensor<4xf32>
  %v = qnn.constant dense<[1.01, 1.37, 0.86, 1.10]> : tensor<4xf32>
  %1 = qnn.batch_norm %0, %g, %b, %m, %v {name = "bn3", epsilon = 1.0e-03 : f64} : (tensor<1x4x5x5xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x5x5xf32>
  %2 = qnn.relu %1 : (tensor<1x4x5x5xf32>) -> tensor<1x4x5x5xf32>
  func.return %2 : tensor<1x4x5x5xf32>
}

// -----

// Rules 2 and 5: grouped conv_transpose + BN + Scale -> conv_transpose.
// CHECK-LABEL: func.func @deconv_bn_scale
// CHECK: %[[W:.*]] = qnn.constant {{.*}} : tensor<4x3x2x2xf32> {name = "up.weight_fused"}
// CHECK-NEXT: %[[B:.*]] = qnn.constant {{.*}} : tensor<6xf32> {name = "up.bias_fused"}
// CHECK-NEXT: %[[Y:.*]] = qnn.conv_transpose %x, %[[W]], %[[B]] {name = "up", {{.*}} groups = 2 : i64}
// CHECK-NOT: qnn.batch_norm
// CHECK-NOT: qnn.scale
// CHECK-NEXT: func.return %[[Y]]
func.func @deconv_bn_scale(%x: tensor<1x4x3x3xf32>) -> tensor<1x6x6x6xf32> {
  %w = qnn.constant dense<[[[[0.25, 0.79], [0.55, -0.55]], [[-0.40, 0.75], [-0.99, 0.64]], [[0.59, -0.06], [-0.39, -0.44]]], [[[-0.49, -0.11], [0.01, 0.11]], [[0.99, 0.59], [0.24, 0.98]], [[-0.57, -0.68], [0.23, -0.91]]], [[[-0.93, 0.03], [-0.07, 0.83]], [[0.26, 0.03], [-0.01, -0.50]], [[-0.98, -0.62], [0.38, -0.60]]], [[[-0.26, -0.99], [0.66, -0.69]], [[-0.46, 0.76], [0.02, 0.69]], [[0.28, 0.48], [-0.82, 0.08]]]]> : tensor<4x3x2x2xf32>
  %0 = qnn.conv_transpose %x, %w {name = "up", strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, output_padding = array<i64: 0, 0>, groups = 2 : i64} : (tensor<1x4x3x3xf32>, tensor<4x3x2x2xf32>) -> tensor<1x6x6x6xf32>
  %g = qnn.constant dense<[0.02, 0.74, -0.28, 0.20, -0.88, -0.22]> : tensor<6xf32>
  %b = qnn.constant dense<[-0.35, -0.70, 0.63, -0.24, 0.96, 0.18]> : tensor<6xf32>
  %m = qnn.constant dense<[0.21, 0.28, 0.35, -0.70, -0.12, -0.52]> : tensor<6xf32>
  %v = qnn.constant dense<[0.90, 0.60, 1.47, 0.72, 1.17, 0.80]> : tensor<6xf32>
  %1 = qnn.batch_norm %0, %g, %b, %m, %v {name = "bn4", epsilon = 1.0e-05 : f64} : (tensor<1x6x6x6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>) -> tensor<1x6x6x6xf32>
  %s = qnn.constant dense<[0.75, 0.32, -0.74, 0.69, 0.89, 0.81]> : tensor<6xf32>
  %2 = qnn.scale %1, %s {name = "sc4", axis = 1 : i64} : (tensor<1x6x6x6xf32>, tensor<6xf32>) -> tensor<1x6x6x6xf32>
  func.return %2 : tensor<1x6x6x6xf32>
}

// -----

// Rules 3 and 5: dense + BN + Scale -> dense.
// CHECK-LABEL: func.func @dense_bn_scale
// CHECK: %[[W:.*]] = qnn.constant {{.*}} : tensor<4x8xf32> {name = "fc.weight_fused"}
// CHECK-NEXT: %[[B:.*]] = qnn.constant {{.*}} : tensor<4xf32> {name = "fc.bias_fused"}
// CHECK-NEXT: %[[Y:.*]] = qnn.dense %x, %[[W]], %[[B]] {name = "fc"}
// CHECK-NOT: qnn.batch_norm
// CHECK-NOT: qnn.scale
// CHECK-NEXT: func.return %[[Y]]
func.func @dense_bn_scale(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
  %w = qnn.constant dense<[[0.25, 0.79, 0.55, -0.55, -0.40, 0.75, -0.99, 0.64], [0.59, -0.06, -0.39, -0.44, -0.49, -0.11, 0.01, 0.11], [0.99, 0.59, 0.24, 0.98, -0.57, -0.68, 0.23, -0.91], [-0.93, 0.03, -0.07, 0.83, 0.26, 0.03, -0.01, -0.50]]> : tensor<4x8xf32>
  %fb = qnn.constant dense<[-0.98, -0.62, 0.38, -0.60]> : tensor<4xf32>
  %0 = qnn.dense %x, %w, %fb {name = "fc"} : (tensor<2x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  %g = qnn.constant dense<[-0.26, -0.99, 0.66, -0.69]> : tensor<4xf32>
  %b = qnn.constant dense<[-0.46, 0.76, 0.02, 0.69]> : tensor<4xf32>
  %m = qnn.constant dense<[0.28, 0.48, -0.82, 0.08]> : tensor<4xf32>
  %v = qnn.constant dense<[1.01, 1.37, 0.86, 1.10]> : tensor<4xf32>
  %1 = qnn.batch_norm %0, %g, %b, %m, %v {name = "bn5", epsilon = 1.0e-05 : f64} : (tensor<2x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  %s = qnn.constant dense<[-0.88, -0.22, -0.35, -0.70]> : tensor<4xf32>
  %t = qnn.constant dense<[0.63, -0.24, 0.96, 0.18]> : tensor<4xf32>
  %2 = qnn.scale %1, %s, %t {name = "sc5", axis = 1 : i64} : (tensor<2x4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  func.return %2 : tensor<2x4xf32>
}

// -----

// Rule 1: the per-channel Mul and Add that TensorFlow / ONNX exporters leave
// behind a conv ([C, 1, 1] and [1, C, 1, 1]; the constant on either side).
// CHECK-LABEL: func.func @conv_mul_add
// CHECK: %[[W:.*]] = qnn.constant {{.*}} {name = "c6.weight_fused"}
// CHECK-NEXT: %[[B:.*]] = qnn.constant {{.*}} {name = "c6.bias_fused"}
// CHECK-NEXT: %[[Y:.*]] = qnn.conv %x, %[[W]], %[[B]] {name = "c6",
// CHECK-NOT: qnn.mul
// CHECK-NOT: qnn.add
// CHECK-NEXT: func.return %[[Y]]
func.func @conv_mul_add(%x: tensor<1x2x4x4xf32>) -> tensor<1x3x4x4xf32> {
  %w = qnn.constant dense<[[[[0.25]], [[0.79]]], [[[0.55]], [[-0.55]]], [[[-0.40]], [[0.75]]]]> : tensor<3x2x1x1xf32>
  %0 = qnn.conv %x, %w {name = "c6", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>) -> tensor<1x3x4x4xf32>
  %a = qnn.constant dense<[[[-0.99]], [[0.64]], [[0.59]]]> : tensor<3x1x1xf32>
  %1 = qnn.mul %a, %0 : (tensor<3x1x1xf32>, tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
  %b = qnn.constant dense<[[[[-0.06]], [[-0.39]], [[-0.44]]]]> : tensor<1x3x1x1xf32>
  %2 = qnn.add %1, %b : (tensor<1x3x4x4xf32>, tensor<1x3x1x1xf32>) -> tensor<1x3x4x4xf32>
  func.return %2 : tensor<1x3x4x4xf32>
}

// -----

// Rule 1: a qnn.scale after a conv, and a scalar Mul.
// CHECK-LABEL: func.func @conv_scale_scalar_mul
// CHECK: %[[Y:.*]] = qnn.conv %x, %{{.*}}, %{{.*}} {name = "c7",
// CHECK-NOT: qnn.scale
// CHECK-NOT: qnn.mul
// CHECK-NEXT: func.return %[[Y]]
func.func @conv_scale_scalar_mul(%x: tensor<1x2x4x4xf32>) -> tensor<1x3x4x4xf32> {
  %w = qnn.constant dense<[[[[0.25]], [[0.79]]], [[[0.55]], [[-0.55]]], [[[-0.40]], [[0.75]]]]> : tensor<3x2x1x1xf32>
  %0 = qnn.conv %x, %w {name = "c7", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>) -> tensor<1x3x4x4xf32>
  %s = qnn.constant dense<[-0.99, 0.64, 0.59]> : tensor<3xf32>
  %t = qnn.constant dense<[-0.06, -0.39, -0.44]> : tensor<3xf32>
  %1 = qnn.scale %0, %s, %t {axis = 1 : i64} : (tensor<1x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x4x4xf32>
  %k = qnn.constant dense<0.5> : tensor<f32>
  %2 = qnn.mul %1, %k : (tensor<1x3x4x4xf32>, tensor<f32>) -> tensor<1x3x4x4xf32>
  func.return %2 : tensor<1x3x4x4xf32>
}

// -----

// Rules 5 and 4: BN + Scale before an unpadded conv fold into its weights and bias.
// CHECK-LABEL: func.func @bn_scale_conv
// CHECK-NEXT: %[[W:.*]] = qnn.constant {{.*}} {name = "c8.weight_fused"}
// CHECK-NEXT: %[[B:.*]] = qnn.constant {{.*}} {name = "c8.bias_fused"}
// CHECK-NEXT: %[[Y:.*]] = qnn.conv %x, %[[W]], %[[B]] {name = "c8",
// CHECK-NEXT: func.return %[[Y]]
func.func @bn_scale_conv(%x: tensor<1x2x4x4xf32>) -> tensor<1x3x2x2xf32> {
  %g = qnn.constant dense<[0.25, 0.79]> : tensor<2xf32>
  %b = qnn.constant dense<[0.55, -0.55]> : tensor<2xf32>
  %m = qnn.constant dense<[-0.40, 0.75]> : tensor<2xf32>
  %v = qnn.constant dense<[0.51, 1.32]> : tensor<2xf32>
  %0 = qnn.batch_norm %x, %g, %b, %m, %v {name = "bn8", epsilon = 1.0e-05 : f64} : (tensor<1x2x4x4xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x4x4xf32>
  %s = qnn.constant dense<[0.59, -0.06]> : tensor<2xf32>
  %t = qnn.constant dense<[-0.39, -0.44]> : tensor<2xf32>
  %1 = qnn.scale %0, %s, %t {name = "sc8", axis = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x4x4xf32>
  %w = qnn.constant dense<[[[[-0.49, -0.11, 0.01], [0.11, 0.99, 0.59], [0.24, 0.98, -0.57]], [[-0.68, 0.23, -0.91], [-0.93, 0.03, -0.07], [0.83, 0.26, 0.03]]], [[[-0.01, -0.50, -0.98], [-0.62, 0.38, -0.60], [-0.26, -0.99, 0.66]], [[-0.69, -0.46, 0.76], [0.02, 0.69, 0.28], [0.48, -0.82, 0.08]]], [[[0.02, 0.74, -0.28], [0.20, -0.88, -0.22], [-0.35, -0.70, 0.63]], [[-0.24, 0.96, 0.18], [0.21, 0.28, 0.35], [-0.70, -0.12, -0.52]]]]> : tensor<3x2x3x3xf32>
  %cb = qnn.constant dense<[-0.20, -0.81, 0.94]> : tensor<3xf32>
  %2 = qnn.conv %1, %w, %cb {name = "c8", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x3x3xf32>, tensor<3xf32>) -> tensor<1x3x2x2xf32>
  func.return %2 : tensor<1x3x2x2xf32>
}

// -----

// Rule 4: a BN whose shift is exactly zero folds into a padded conv (exact).
// CHECK-LABEL: func.func @bn_zero_shift_padded_conv
// CHECK-NEXT: %[[W:.*]] = qnn.constant {{.*}} {name = "c9.weight_fused"}
// CHECK-NEXT: %[[B:.*]] = qnn.constant dense<0.000000e+00> : tensor<3xf32> {name = "c9.bias_fused"}
// CHECK-NEXT: %[[Y:.*]] = qnn.conv %x, %[[W]], %[[B]] {name = "c9", {{.*}} pads = array<i64: 1, 1, 1, 1>
// CHECK-NEXT: func.return %[[Y]]
func.func @bn_zero_shift_padded_conv(%x: tensor<1x2x4x4xf32>) -> tensor<1x3x4x4xf32> {
  %g = qnn.constant dense<[1.13, 1.40]> : tensor<2xf32>
  %z = qnn.constant dense<0.0> : tensor<2xf32>
  %v = qnn.constant dense<[1.28, 0.73]> : tensor<2xf32>
  %0 = qnn.batch_norm %x, %g, %z, %z, %v {name = "bn9", epsilon = 1.0e-05 : f64} : (tensor<1x2x4x4xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x4x4xf32>
  %w = qnn.constant dense<[[[[-0.40, 0.75, -0.99], [0.64, 0.59, -0.06], [-0.39, -0.44, -0.49]], [[-0.11, 0.01, 0.11], [0.99, 0.59, 0.24], [0.98, -0.57, -0.68]]], [[[0.23, -0.91, -0.93], [0.03, -0.07, 0.83], [0.26, 0.03, -0.01]], [[-0.50, -0.98, -0.62], [0.38, -0.60, -0.26], [-0.99, 0.66, -0.69]]], [[[-0.46, 0.76, 0.02], [0.69, 0.28, 0.48], [-0.82, 0.08, 0.02]], [[0.74, -0.28, 0.20], [-0.88, -0.22, -0.35], [-0.70, 0.63, -0.24]]]]> : tensor<3x2x3x3xf32>
  %1 = qnn.conv %0, %w {name = "c9", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x3x3xf32>) -> tensor<1x3x4x4xf32>
  func.return %1 : tensor<1x3x4x4xf32>
}

// -----

// Rule 6: a BN with no layer to fold into becomes a qnn.scale.
// CHECK-LABEL: func.func @bn_alone
// CHECK-NEXT: %[[R:.*]] = qnn.relu %x
// CHECK-NEXT: %[[S:.*]] = qnn.constant dense<{{.*}}> : tensor<3xf32> {name = "bn10.scale"}
// CHECK-NEXT: %[[B:.*]] = qnn.constant dense<{{.*}}> : tensor<3xf32> {name = "bn10.bias"}
// CHECK-NEXT: %[[Y:.*]] = qnn.scale %[[R]], %[[S]], %[[B]] {name = "bn10", axis = 1 : i64}
// CHECK-NOT: qnn.batch_norm
// CHECK-NEXT: func.return %[[Y]]
func.func @bn_alone(%x: tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32> {
  %0 = qnn.relu %x : (tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
  %g = qnn.constant dense<[0.25, 0.79, 0.55]> : tensor<3xf32>
  %b = qnn.constant dense<[-0.55, -0.40, 0.75]> : tensor<3xf32>
  %m = qnn.constant dense<[-0.99, 0.64, 0.59]> : tensor<3xf32>
  %v = qnn.constant dense<[0.97, 0.80, 0.78]> : tensor<3xf32>
  %1 = qnn.batch_norm %0, %g, %b, %m, %v {name = "bn10", epsilon = 1.0e-05 : f64} : (tensor<1x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x4x4xf32>
  func.return %1 : tensor<1x3x4x4xf32>
}

// -----

// Rule 5: BN + Mul + Add (as ONNX exporters write a BN with affine) -> one qnn.scale.
// CHECK-LABEL: func.func @bn_mul_add
// CHECK-NEXT: %[[S:.*]] = qnn.constant {{.*}} {name = "bn11.scale"}
// CHECK-NEXT: %[[B:.*]] = qnn.constant {{.*}} {name = "bn11.bias"}
// CHECK-NEXT: %[[Y:.*]] = qnn.scale %x, %[[S]], %[[B]] {name = "bn11", axis = 1 : i64}
// CHECK-NOT: qnn.mul
// CHECK-NOT: qnn.add
// CHECK-NEXT: func.return %[[Y]]
func.func @bn_mul_add(%x: tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32> {
  %g = qnn.constant dense<[0.25, 0.79, 0.55]> : tensor<3xf32>
  %b = qnn.constant dense<[-0.55, -0.40, 0.75]> : tensor<3xf32>
  %m = qnn.constant dense<[-0.99, 0.64, 0.59]> : tensor<3xf32>
  %v = qnn.constant dense<[0.97, 0.80, 0.78]> : tensor<3xf32>
  %0 = qnn.batch_norm %x, %g, %b, %m, %v {name = "bn11", epsilon = 1.0e-05 : f64} : (tensor<1x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x4x4xf32>
  %s = qnn.constant dense<[[[-0.49]], [[-0.11]], [[0.01]]]> : tensor<3x1x1xf32>
  %1 = qnn.mul %0, %s : (tensor<1x3x4x4xf32>, tensor<3x1x1xf32>) -> tensor<1x3x4x4xf32>
  %t = qnn.constant dense<[[[0.11]], [[0.99]], [[0.59]]]> : tensor<3x1x1xf32>
  %2 = qnn.add %1, %t : (tensor<1x3x4x4xf32>, tensor<3x1x1xf32>) -> tensor<1x3x4x4xf32>
  func.return %2 : tensor<1x3x4x4xf32>
}

// -----

// Must not fire: the conv is named in skip_layers (the RUN line); its BN becomes a scale.
// CHECK-LABEL: func.func @skip_layers
// CHECK-NEXT: %[[W:.*]] = qnn.constant
// CHECK-NEXT: %[[C:.*]] = qnn.conv %x, %[[W]] {name = "skipped",
// CHECK-NOT: _fused
// CHECK: %[[Y:.*]] = qnn.scale %[[C]], %{{.*}}, %{{.*}} {name = "bn12", axis = 1 : i64}
// CHECK-NEXT: func.return %[[Y]]
func.func @skip_layers(%x: tensor<1x2x4x4xf32>) -> tensor<1x3x4x4xf32> {
  %w = qnn.constant dense<[[[[0.25]], [[0.79]]], [[[0.55]], [[-0.55]]], [[[-0.40]], [[0.75]]]]> : tensor<3x2x1x1xf32>
  %0 = qnn.conv %x, %w {name = "skipped", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>) -> tensor<1x3x4x4xf32>
  %g = qnn.constant dense<[-0.99, 0.64, 0.59]> : tensor<3xf32>
  %b = qnn.constant dense<[-0.06, -0.39, -0.44]> : tensor<3xf32>
  %m = qnn.constant dense<[-0.49, -0.11, 0.01]> : tensor<3xf32>
  %v = qnn.constant dense<[1.05, 1.50, 1.29]> : tensor<3xf32>
  %1 = qnn.batch_norm %0, %g, %b, %m, %v {name = "bn12", epsilon = 1.0e-05 : f64} : (tensor<1x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x4x4xf32>
  func.return %1 : tensor<1x3x4x4xf32>
}

// -----

// Must not fire: the conv's output has another user (the relu needs the unfolded value).
// CHECK-LABEL: func.func @conv_output_has_another_user
// CHECK-NEXT: %[[W:.*]] = qnn.constant
// CHECK-NEXT: %[[C:.*]] = qnn.conv %x, %[[W]] {name = "c13",
// CHECK-NOT: _fused
// CHECK: %[[Y:.*]] = qnn.scale %[[C]], %{{.*}}, %{{.*}} {name = "bn13", axis = 1 : i64}
// CHECK-NEXT: %[[R:.*]] = qnn.relu %[[C]]
// CHECK-NEXT: func.return %[[Y]], %[[R]]
func.func @conv_output_has_another_user(%x: tensor<1x2x4x4xf32>) -> (tensor<1x3x4x4xf32>, tensor<1x3x4x4xf32>) {
  %w = qnn.constant dense<[[[[0.25]], [[0.79]]], [[[0.55]], [[-0.55]]], [[[-0.40]], [[0.75]]]]> : tensor<3x2x1x1xf32>
  %0 = qnn.conv %x, %w {name = "c13", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>) -> tensor<1x3x4x4xf32>
  %g = qnn.constant dense<[-0.99, 0.64, 0.59]> : tensor<3xf32>
  %b = qnn.constant dense<[-0.06, -0.39, -0.44]> : tensor<3xf32>
  %m = qnn.constant dense<[-0.49, -0.11, 0.01]> : tensor<3xf32>
  %v = qnn.constant dense<[1.05, 1.50, 1.29]> : tensor<3xf32>
  %1 = qnn.batch_norm %0, %g, %b, %m, %v {name = "bn13", epsilon = 1.0e-05 : f64} : (tensor<1x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x4x4xf32>
  %2 = qnn.relu %0 : (tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
  func.return %1, %2 : tensor<1x3x4x4xf32>, tensor<1x3x4x4xf32>
}

// -----

// Must not fire: a BN with a nonzero shift before a padded conv (the zero padding
// comes after the shift, so the borders would differ; a remark says so).
// CHECK-LABEL: func.func @bn_shift_padded_conv
// CHECK: %[[S:.*]] = qnn.scale %x, %{{.*}}, %{{.*}} {name = "bn14", axis = 1 : i64}
// CHECK-NEXT: %[[W:.*]] = qnn.constant
// CHECK-NEXT: %[[Y:.*]] = qnn.conv %[[S]], %[[W]] {name = "c14",
// CHECK-NOT: _fused
// CHECK-NEXT: func.return %[[Y]]
func.func @bn_shift_padded_conv(%x: tensor<1x2x4x4xf32>) -> tensor<1x3x4x4xf32> {
  %g = qnn.constant dense<[0.25, 0.79]> : tensor<2xf32>
  %b = qnn.constant dense<[0.55, -0.55]> : tensor<2xf32>
  %m = qnn.constant dense<[-0.40, 0.75]> : tensor<2xf32>
  %v = qnn.constant dense<[0.51, 1.32]> : tensor<2xf32>
  %0 = qnn.batch_norm %x, %g, %b, %m, %v {name = "bn14", epsilon = 1.0e-05 : f64} : (tensor<1x2x4x4xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x4x4xf32>
  %w = qnn.constant dense<[[[[0.59, -0.06, -0.39], [-0.44, -0.49, -0.11], [0.01, 0.11, 0.99]], [[0.59, 0.24, 0.98], [-0.57, -0.68, 0.23], [-0.91, -0.93, 0.03]]], [[[-0.07, 0.83, 0.26], [0.03, -0.01, -0.50], [-0.98, -0.62, 0.38]], [[-0.60, -0.26, -0.99], [0.66, -0.69, -0.46], [0.76, 0.02, 0.69]]], [[[0.28, 0.48, -0.82], [0.08, 0.02, 0.74], [-0.28, 0.20, -0.88]], [[-0.22, -0.35, -0.70], [0.63, -0.24, 0.96], [0.18, 0.21, 0.28]]]]> : tensor<3x2x3x3xf32>
  %1 = qnn.conv %0, %w {name = "c14", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x3x3xf32>) -> tensor<1x3x4x4xf32>
  func.return %1 : tensor<1x3x4x4xf32>
}

// -----

// Must not fire: a Mul by an activation, and a Mul by a constant that varies
// over space rather than channels, stay after the conv.
// CHECK-LABEL: func.func @conv_mul_not_per_channel
// CHECK-NEXT: %[[W:.*]] = qnn.constant
// CHECK-NEXT: %[[C:.*]] = qnn.conv %x, %[[W]] {name = "c15",
// CHECK-NEXT: %[[M:.*]] = qnn.mul %[[C]], %y
// CHECK-NEXT: %[[K:.*]] = qnn.constant
// CHECK-NEXT: %[[C2:.*]] = qnn.conv %x, %[[W]] {name = "c16",
// CHECK-NEXT: %[[N:.*]] = qnn.mul %[[C2]], %[[K]]
// CHECK-NOT: _fused
// CHECK: func.return %[[M]], %[[N]]
func.func @conv_mul_not_per_channel(%x: tensor<1x2x4x4xf32>, %y: tensor<1x3x4x4xf32>) -> (tensor<1x3x4x4xf32>, tensor<1x3x4x4xf32>) {
  %w = qnn.constant dense<[[[[0.25]], [[0.79]]], [[[0.55]], [[-0.55]]], [[[-0.40]], [[0.75]]]]> : tensor<3x2x1x1xf32>
  %0 = qnn.conv %x, %w {name = "c15", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>) -> tensor<1x3x4x4xf32>
  %1 = qnn.mul %0, %y : (tensor<1x3x4x4xf32>, tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
  %k = qnn.constant dense<[[[[-0.99, 0.64, 0.59, -0.06], [-0.39, -0.44, -0.49, -0.11], [0.01, 0.11, 0.99, 0.59], [0.24, 0.98, -0.57, -0.68]]]]> : tensor<1x1x4x4xf32>
  %2 = qnn.conv %x, %w {name = "c16", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>) -> tensor<1x3x4x4xf32>
  %3 = qnn.mul %2, %k : (tensor<1x3x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<1x3x4x4xf32>
  func.return %1, %3 : tensor<1x3x4x4xf32>, tensor<1x3x4x4xf32>
}
