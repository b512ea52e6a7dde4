// RUN: qcc-opt %s --split-input-file -p qcc-equalize | filecheck %s
// RUN: qcc-opt %s --split-input-file -p 'qcc-equalize{relu6_as_relu=true}' | filecheck %s --check-prefix=RELU6
// RUN: qcc-opt %s --split-input-file -p 'qcc-equalize{absorb_bias=true}' | filecheck %s --check-prefix=ABSORB

// Rule 1: conv -> relu -> padded conv. Both weights are replaced, layer 1's bias is
// scaled, layer 2 keeps its bias and carries the scales.
// CHECK-LABEL: func.func @conv_relu_conv
// CHECK-NEXT: %[[W1:.*]] = qnn.constant {{.*}} : tensor<3x2x1x1xf32> {name = "c1.weight_eq"}
// CHECK-NEXT: %[[B1:.*]] = qnn.constant {{.*}} : tensor<3xf32> {name = "c1.bias_eq"}
// CHECK-NEXT: %[[Y1:.*]] = qnn.conv %x, %[[W1]], %[[B1]] {name = "c1",
// CHECK-NOT: qcc.equalize_scales
// CHECK-NEXT: %[[R:.*]] = qnn.relu %[[Y1]]
// CHECK-NEXT: %[[B2:.*]] = qnn.constant dense<[1.000000e-01, -2.000000e-01]> : tensor<2xf32>
// CHECK-NEXT: %[[W2:.*]] = qnn.constant {{.*}} : tensor<2x3x3x3xf32> {name = "c2.weight_eq"}
// CHECK-NEXT: %[[Y2:.*]] = qnn.conv %[[R]], %[[W2]], %[[B2]] {name = "c2", qcc.equalize_scales = array<f64: 0.28426{{[0-9]*}}, 0.74914{{[0-9]*}}, 0.62269{{[0-9]*}}>,
// CHECK-NEXT: func.return %[[Y2]]
// Rule 4 needs a std estimate (qcc.output_std): none here, so nothing is absorbed.
// ABSORB-LABEL: func.func @conv_relu_conv
// ABSORB-NOT: c2.bias_eq
// ABSORB: qnn.conv %{{.*}}, %{{.*}}, %b2 {name = "c2",
func.func @conv_relu_conv(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %w1 = qnn.constant dense<[[[[0.02]], [[0.08]]], [[[0.55]], [[-0.55]]], [[[-0.20]], [[0.38]]]]> : tensor<3x2x1x1xf32>
  %b1 = qnn.constant dense<[-0.99, 0.64, 0.59]> : tensor<3xf32>
  %0 = qnn.conv %x, %w1, %b1 {name = "c1", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>, tensor<3xf32>) -> tensor<1x3x4x4xf32>
  %1 = qnn.relu %0 : (tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
  %w2 = qnn.constant dense<[[[[-0.06, -0.39, -0.44], [-0.49, -0.11, 0.01], [0.11, 0.99, 0.59]], [[0.24, 0.98, -0.57], [-0.68, 0.23, -0.91], [-0.93, 0.03, -0.07]], [[0.83, 0.26, 0.03], [-0.01, -0.50, -0.98], [-0.62, 0.38, -0.60]]], [[[-0.26, -0.99, 0.66], [-0.69, -0.46, 0.76], [0.02, 0.69, 0.28]], [[0.48, -0.82, 0.08], [0.02, 0.74, -0.28], [0.20, -0.88, -0.22]], [[-0.35, -0.70, 0.63], [-0.24, 0.96, 0.18], [0.21, 0.28, 0.35]]]]> : tensor<2x3x3x3xf32>
  %b2 = qnn.constant dense<[0.10, -0.20]> : tensor<2xf32>
  %2 = qnn.conv %1, %w2, %b2 {name = "c2", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x4x4xf32>, tensor<2x3x3x3xf32>, tensor<2xf32>) -> tensor<1x2x4x4xf32>
  func.return %2 : tensor<1x2x4x4xf32>
}

// -----

// Rule 1: dense -> relu -> dense (channels on the last axis; W1 rows, W2 columns).
// CHECK-LABEL: func.func @dense_relu_dense
// CHECK-NEXT: %[[W1:.*]] = qnn.constant {{.*}} : tensor<3x4xf32> {name = "d1.weight_eq"}
// CHECK-NEXT: %[[B1:.*]] = qnn.constant {{.*}} : tensor<3xf32> {name = "d1.bias_eq"}
// CHECK-NEXT: %[[Y1:.*]] = qnn.dense %x, %[[W1]], %[[B1]] {name = "d1"}
// CHECK-NEXT: %[[R:.*]] = qnn.relu %[[Y1]]
// CHECK-NEXT: %[[W2:.*]] = qnn.constant {{.*}} : tensor<2x3xf32> {name = "d2.weight_eq"}
// CHECK-NEXT: %[[Y2:.*]] = qnn.dense %[[R]], %[[W2]] {name = "d2", qcc.equalize_scales = array<f64: {{.*}}>}
// CHECK-NEXT: func.return %[[Y2]]
func.func @dense_relu_dense(%x: tensor<2x4xf32>) -> tensor<2x2xf32> {
  %w1 = qnn.constant dense<[[-1.40, -0.24, -1.04, -0.40], [-0.16, 0.19, -0.11, 0.07], [-0.40, 0.75, 0.32, -0.74]]> : tensor<3x4xf32>
  %b1 = qnn.constant dense<[0.69, 0.89, 0.81]> : tensor<3xf32>
  %0 = qnn.dense %x, %w1, %b1 {name = "d1"} : (tensor<2x4xf32>, tensor<3x4xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  %1 = qnn.relu %0 : (tensor<2x3xf32>) -> tensor<2x3xf32>
  %w2 = qnn.constant dense<[[0.14, -0.71, -0.62], [0.86, 0.10, -0.64]]> : tensor<2x3xf32>
  %2 = qnn.dense %1, %w2 {name = "d2"} : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x2xf32>
  func.return %2 : tensor<2x2xf32>
}

// -----

// Rules 1 and 2: pointwise -> relu -> depthwise (groups = 3) -> pointwise, joined
// by nothing: one chain, both joints equalized, each second layer has its scales.
// CHECK-LABEL: func.func @conv_depthwise_conv
// CHECK-NEXT: %[[W1:.*]] = qnn.constant {{.*}} {name = "pw1.weight_eq"}
// CHECK-NEXT: %[[Y1:.*]] = qnn.conv %x, %[[W1]] {name = "pw1",
// CHECK-NEXT: %[[R:.*]] = qnn.relu %[[Y1]]
// CHECK-NEXT: %[[WD:.*]] = qnn.constant {{.*}} : tensor<3x1x3x3xf32> {name = "dw.weight_eq"}
// CHECK-NEXT: %[[YD:.*]] = qnn.conv %[[R]], %[[WD]] {name = "dw", qcc.equalize_scales = array<f64: {{.*}}>, {{.*}} groups = 3 : i64}
// CHECK-NEXT: %[[W2:.*]] = qnn.constant {{.*}} {name = "pw2.weight_eq"}
// CHECK-NEXT: %[[Y2:.*]] = qnn.conv %[[YD]], %[[W2]] {name = "pw2", qcc.equalize_scales = array<f64: {{.*}}>,
// CHECK-NEXT: func.return %[[Y2]]
func.func @conv_depthwise_conv(%x: tensor<1x2x5x5xf32>) -> tensor<1x2x5x5xf32> {
  %w1 = qnn.constant dense<[[[[0.23]], [[0.08]]], [[[0.14]], [[-0.25]]], [[[-0.02]], [[-0.05]]]]> : tensor<3x2x1x1xf32>
  %0 = qnn.conv %x, %w1 {name = "pw1", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x5x5xf32>, tensor<3x2x1x1xf32>) -> tensor<1x3x5x5xf32>
  %1 = qnn.relu %0 : (tensor<1x3x5x5xf32>) -> tensor<1x3x5x5xf32>
  %wd = qnn.constant dense<[[[[-0.92, 0.75, -0.06], [0.10, -0.36, 0.50], [-0.95, -0.26, -0.94]]], [[[-0.15, 0.19, 0.06], [-0.03, 0.01, 0.15], [-0.06, 0.04, 0.07]]], [[[-0.14, 0.02, 0.26], [0.41, -0.35, 0.44], [-0.50, 0.26, 0.31]]]]> : tensor<3x1x3x3xf32>
  %2 = qnn.conv %1, %wd {name = "dw", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 3 : i64} : (tensor<1x3x5x5xf32>, tensor<3x1x3x3xf32>) -> tensor<1x3x5x5xf32>
  %w2 = qnn.constant dense<[[[[-0.73]], [[-0.16]], [[0.63]]], [[[-0.97]], [[0.26]], [[0.59]]]]> : tensor<2x3x1x1xf32>
  %3 = qnn.conv %2, %w2 {name = "pw2", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x5x5xf32>, tensor<2x3x1x1xf32>) -> tensor<1x2x5x5xf32>
  func.return %3 : tensor<1x2x5x5xf32>
}

// -----

// Rule 3: a clip to [0, 6] (ReLU6) blocks the pair; with relu6_as_relu=true it
// becomes a relu (keeping its name) and the pair is equalized.
// CHECK-LABEL: func.func @conv_relu6_conv
// CHECK-NOT: _eq
// CHECK: qnn.clip
// CHECK-NOT: _eq
// CHECK: func.return
// RELU6-LABEL: func.func @conv_relu6_conv
// RELU6: %[[Y1:.*]] = qnn.conv %x, %{{.*}}, %{{.*}} {name = "c3",
// RELU6-NEXT: %[[R:.*]] = qnn.relu %[[Y1]] {name = "r3"}
// RELU6-NOT: qnn.clip
// RELU6-NEXT: %[[W2:.*]] = qnn.constant {{.*}} {name = "c4.weight_eq"}
// RELU6-NEXT: %[[Y2:.*]] = qnn.conv %[[R]], %[[W2]] {name = "c4", qcc.equalize_scales
func.func @conv_relu6_conv(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %w1 = qnn.constant dense<[[[[0.02]], [[0.08]]], [[[0.55]], [[-0.55]]], [[[-0.20]], [[0.38]]]]> : tensor<3x2x1x1xf32>
  %b1 = qnn.constant dense<[-0.99, 0.64, 0.59]> : tensor<3xf32>
  %0 = qnn.conv %x, %w1, %b1 {name = "c3", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>, tensor<3xf32>) -> tensor<1x3x4x4xf32>
  %1 = qnn.clip %0 {name = "r3", min = 0.0 : f64, max = 6.0 : f64} : (tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
  %w2 = qnn.constant dense<[[[[0.83]], [[0.26]], [[0.03]]], [[[-0.01]], [[-0.50]], [[-0.98]]]]> : tensor<2x3x1x1xf32>
  %2 = qnn.conv %1, %w2 {name = "c4", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x4x4xf32>, tensor<2x3x1x1xf32>) -> tensor<1x2x4x4xf32>
  func.return %2 : tensor<1x2x4x4xf32>
}

// -----

// Must not fire: the relu's output has another user (it needs the unscaled value).
// CHECK-LABEL: func.func @another_user
// CHECK-NOT: _eq
// CHECK-NOT: qcc.equalize_scales
// CHECK: func.return
func.func @another_user(%x: tensor<1x2x4x4xf32>) -> (tensor<1x2x4x4xf32>, tensor<1x3x4x4xf32>) {
  %w1 = qnn.constant dense<[[[[0.02]], [[0.08]]], [[[0.55]], [[-0.55]]], [[[-0.20]], [[0.38]]]]> : tensor<3x2x1x1xf32>
  %0 = qnn.conv %x, %w1 {name = "c5", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>) -> tensor<1x3x4x4xf32>
  %1 = qnn.relu %0 : (tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
  %w2 = qnn.constant dense<[[[[0.83]], [[0.26]], [[0.03]]], [[[-0.01]], [[-0.50]], [[-0.98]]]]> : tensor<2x3x1x1xf32>
  %2 = qnn.conv %1, %w2 {name = "c6", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x4x4xf32>, tensor<2x3x1x1xf32>) -> tensor<1x2x4x4xf32>
  func.return %2, %1 : tensor<1x2x4x4xf32>, tensor<1x3x4x4xf32>
}

// -----

// Must not fire: layer 2's weight is an input of the function, not a constant.
// CHECK-LABEL: func.func @non_constant_weight
// CHECK-NOT: _eq
// CHECK-NOT: qcc.equalize_scales
// CHECK: func.return
func.func @non_constant_weight(%x: tensor<1x2x4x4xf32>, %w2: tensor<2x3x1x1xf32>) -> tensor<1x2x4x4xf32> {
  %w1 = qnn.constant dense<[[[[0.02]], [[0.08]]], [[[0.55]], [[-0.55]]], [[[-0.20]], [[0.38]]]]> : tensor<3x2x1x1xf32>
  %0 = qnn.conv %x, %w1 {name = "c7", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>) -> tensor<1x3x4x4xf32>
  %1 = qnn.relu %0 : (tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
  %2 = qnn.conv %1, %w2 {name = "c8", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x4x4xf32>, tensor<2x3x1x1xf32>) -> tensor<1x2x4x4xf32>
  func.return %2 : tensor<1x2x4x4xf32>
}

// -----

// Rule 4: with absorb_bias=true and a std estimate on layer 1 (qcc.output_std),
// c = max(0, b1 - 3 std) moves from layer 1's bias into a new bias of layer 2; the
// std is scaled with the channels. Without the option, only rule 1.
// CHECK-LABEL: func.func @absorb_high_bias
// CHECK: {name = "c9.bias_eq"}
// CHECK: qnn.conv %{{.*}}, %{{.*}} {name = "c10", qcc.equalize_scales
// ABSORB-LABEL: func.func @absorb_high_bias
// ABSORB-NEXT: %[[W1:.*]] = qnn.constant {{.*}} {name = "c9.weight_eq"}
// ABSORB-NEXT: %[[B1:.*]] = qnn.constant {{.*}} {name = "c9.bias_eq"}
// ABSORB-NEXT: %[[Y1:.*]] = qnn.conv %x, %[[W1]], %[[B1]] {name = "c9", qcc.output_std = array<f64: {{.*}}>,
// ABSORB-NEXT: %[[R:.*]] = qnn.relu %[[Y1]]
// ABSORB-NEXT: %[[W2:.*]] = qnn.constant {{.*}} {name = "c10.weight_eq"}
// ABSORB-NEXT: %[[B2:.*]] = qnn.constant {{.*}} : tensor<2xf32> {name = "c10.bias_eq"}
// ABSORB-NEXT: %[[Y2:.*]] = qnn.conv %[[R]], %[[W2]], %[[B2]] {name = "c10", qcc.equalize_scales
// ABSORB-NEXT: func.return %[[Y2]]
func.func @absorb_high_bias(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %w1 = qnn.constant dense<[[[[0.02]], [[0.08]]], [[[0.15]], [[-0.25]]], [[[-0.20]], [[0.38]]]]> : tensor<3x2x1x1xf32>
  %b1 = qnn.constant dense<[5.0, 8.0, 0.5]> : tensor<3xf32>
  %0 = qnn.conv %x, %w1, %b1 {name = "c9", qcc.output_std = array<f64: 0.5, 1.0, 0.5>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>, tensor<3xf32>) -> tensor<1x3x4x4xf32>
  %1 = qnn.relu %0 : (tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
  %w2 = qnn.constant dense<[[[[0.83]], [[0.26]], [[0.03]]], [[[-0.01]], [[-0.50]], [[-0.98]]]]> : tensor<2x3x1x1xf32>
  %2 = qnn.conv %1, %w2 {name = "c10", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x4x4xf32>, tensor<2x3x1x1xf32>) -> tensor<1x2x4x4xf32>
  func.return %2 : tensor<1x2x4x4xf32>
}
