// RUN: qcc-opt %s --split-input-file -p 'qcc-balance{alpha=0.5 data="%S/Inputs/qcc-balance.npz"}' | filecheck %s
// RUN: not qcc-opt %s --split-input-file -p 'qcc-balance{alpha=0.9 data="%S/Inputs/qcc-balance.npz"}' 2>&1 | filecheck %s --check-prefix=ALPHA
// RUN: qcc-opt %s --split-input-file -p 'qcc-balance{alpha=0.5 outlier_ratio=1.0001 data="%S/Inputs/qcc-balance.npz"}' | filecheck %s
// RUN: qcc-opt %s --split-input-file -p 'qcc-balance{alpha=0.5 outlier_ratio=1000 data="%S/Inputs/qcc-balance.npz"}' | filecheck %s --check-prefix=NONE
// RUN: not qcc-opt %s --split-input-file -p 'qcc-balance{outlier_ratio=-1 data="%S/Inputs/qcc-balance.npz"}' 2>&1 | filecheck %s --check-prefix=RATIO

// Every case is @main(input0: 2x4x4x4) so that one calibration file serves them all:
// Inputs/qcc-balance.npz holds input0 (8x4x4x4, standard normal with channel 1 of
// axis 1 and channel 2 of the last axis 10x larger), written by
//   rng = np.random.default_rng(0); x = rng.standard_normal((8, 4, 4, 4)).astype(np.float32)
//   x[:, 1] *= 10; x[..., 2] *= 10; np.savez("qcc-balance.npz", input0=x)

// Out-of-range alpha: an error before any pass runs.
// ALPHA: error: qcc-balance: alpha (migration strength) must be in [0.2, 0.8], got 0.9

// Rule 7: with outlier_ratio, a layer is balanced only when its input's largest
// channel max is above that many times the median channel max. Every input here has
// channels 10x the rest in the data, so 1.0001 balances every case exactly as
// without the option (the CHECK lines), and 1000 balances none.
// NONE-NOT: qcc.balance_factor
// NONE-NOT: _balanced
// RATIO: error: qcc-balance: outlier_ratio must be a number >= 0, got -1

// Rules 2, 4, 5: Q, K, V read one layer_norm, share one s, and 1/s folds into its affine.
// CHECK-LABEL: func.func @main(%lnx
// CHECK-NEXT: %[[G:.*]] = qnn.constant {{.*}} : tensor<4xf32> {name = "ln.scale_balanced"}
// CHECK-NEXT: %[[B:.*]] = qnn.constant {{.*}} : tensor<4xf32> {name = "ln.bias_balanced"}
// CHECK-NEXT: %[[LN:.*]] = qnn.layer_norm %lnx, %[[G]], %[[B]] {name = "ln",
// CHECK-NEXT: %[[WQ:.*]] = qnn.constant {{.*}} : tensor<3x4xf32> {name = "q.weight_balanced"}
// CHECK-NEXT: qnn.dense %[[LN]], %[[WQ]] {name = "q", qcc.balance_factor = array<f64: [[S:.*]]>}
// CHECK: qnn.dense %[[LN]], %{{.*}}, %bk {name = "k", qcc.balance_factor = array<f64: [[S]]>}
// CHECK: qnn.dense %[[LN]], %{{.*}} {name = "v", qcc.balance_factor = array<f64: [[S]]>}
// CHECK-NOT: qnn.scale
func.func @main(%lnx: tensor<2x4x4x4xf32>) -> (tensor<2x4x4x3xf32>, tensor<2x4x4x3xf32>, tensor<2x4x4x2xf32>) {
  %g = qnn.constant dense<[1.0, 2.0, 0.5, 1.5]> : tensor<4xf32>
  %b = qnn.constant dense<[0.1, -0.2, 0.3, 0.0]> : tensor<4xf32>
  %0 = qnn.layer_norm %lnx, %g, %b {name = "ln", axis = -1 : i64, epsilon = 1.0e-05 : f64} : (tensor<2x4x4x4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x4x4x4xf32>
  %wq = qnn.constant dense<[[0.25, 0.79, 0.55, -0.55], [-0.40, 0.75, -0.99, 0.64], [0.59, -0.06, -0.39, -0.44]]> : tensor<3x4xf32>
  %q = qnn.dense %0, %wq {name = "q"} : (tensor<2x4x4x4xf32>, tensor<3x4xf32>) -> tensor<2x4x4x3xf32>
  %wk = qnn.constant dense<[[-0.49, -0.11, 0.01, 0.11], [0.99, 0.59, 0.24, 0.98], [-0.57, -0.68, 0.23, -0.91]]> : tensor<3x4xf32>
  %bk = qnn.constant dense<[0.03, -0.07, 0.83]> : tensor<3xf32>
  %k = qnn.dense %0, %wk, %bk {name = "k"} : (tensor<2x4x4x4xf32>, tensor<3x4xf32>, tensor<3xf32>) -> tensor<2x4x4x3xf32>
  %wv = qnn.constant dense<[[0.26, 0.03, -0.01, -0.50], [-0.98, -0.62, 0.38, -0.60]]> : tensor<2x4xf32>
  %v = qnn.dense %0, %wv {name = "v"} : (tensor<2x4x4x4xf32>, tensor<2x4xf32>) -> tensor<2x4x4x2xf32>
  func.return %q, %k, %v : tensor<2x4x4x3xf32>, tensor<2x4x4x3xf32>, tensor<2x4x4x2xf32>
}

// -----

// Rules 5 and 6: fc2's 1/s folds into the rows of fc1 (weight and bias); fc1 reads a
// model input, so its own 1/s is an explicit qnn.scale over the last axis.
// CHECK-LABEL: func.func @main(%ddx
// CHECK-NEXT: %[[I:.*]] = qnn.constant {{.*}} : tensor<4xf32> {name = "fc1.balance.scale"}
// CHECK-NEXT: %[[X:.*]] = qnn.scale %ddx, %[[I]] {name = "fc1.balance", axis = 3 : i64}
// CHECK-NEXT: %[[W1:.*]] = qnn.constant {{.*}} : tensor<3x4xf32> {name = "fc1.weight_balanced"}
// CHECK-NEXT: %[[B1:.*]] = qnn.constant {{.*}} : tensor<3xf32> {name = "fc1.bias_balanced"}
// CHECK-NEXT: %[[Y:.*]] = qnn.dense %[[X]], %[[W1]], %[[B1]] {name = "fc1", qcc.balance_factor = array<f64: {{.*}}>}
// CHECK-NEXT: %[[W2:.*]] = qnn.constant {{.*}} : tensor<2x3xf32> {name = "fc2.weight_balanced"}
// CHECK-NEXT: %[[Z:.*]] = qnn.dense %[[Y]], %[[W2]] {name = "fc2", qcc.balance_factor = array<f64: {{.*}}>}
// CHECK-NEXT: func.return %[[Z]]
func.func @main(%ddx: tensor<2x4x4x4xf32>) -> tensor<2x4x4x2xf32> {
  %w1 = qnn.constant dense<[[0.25, 0.79, 0.55, -0.55], [-0.40, 0.75, -0.99, 0.64], [0.59, -0.06, -0.39, -0.44]]> : tensor<3x4xf32>
  %b1 = qnn.constant dense<[0.03, -0.07, 0.83]> : tensor<3xf32>
  %0 = qnn.dense %ddx, %w1, %b1 {name = "fc1"} : (tensor<2x4x4x4xf32>, tensor<3x4xf32>, tensor<3xf32>) -> tensor<2x4x4x3xf32>
  %w2 = qnn.constant dense<[[-0.49, -0.11, 0.01], [0.99, 0.59, 0.24]]> : tensor<2x3xf32>
  %1 = qnn.dense %0, %w2 {name = "fc2"} : (tensor<2x4x4x3xf32>, tensor<2x3xf32>) -> tensor<2x4x4x2xf32>
  func.return %1 : tensor<2x4x4x2xf32>
}

// -----

// Rule 6: the producer is per-channel, but its output has another user (the relu needs
// the unscaled value), so 1/s is an explicit qnn.scale right before the dense.
// CHECK-LABEL: func.func @main(%twox
// CHECK: %[[SC:.*]] = qnn.scale %twox, %g, %b {name = "sc", axis = 3 : i64}
// CHECK-NEXT: %[[I:.*]] = qnn.constant {{.*}} {name = "fc.balance.scale"}
// CHECK-NEXT: %[[X:.*]] = qnn.scale %[[SC]], %[[I]] {name = "fc.balance", axis = 3 : i64}
// CHECK-NEXT: %[[W:.*]] = qnn.constant {{.*}} {name = "fc.weight_balanced"}
// CHECK-NEXT: %[[Y:.*]] = qnn.dense %[[X]], %[[W]] {name = "fc", qcc.balance_factor
// CHECK-NEXT: %[[R:.*]] = qnn.relu %[[SC]]
// CHECK-NEXT: func.return %[[Y]], %[[R]]
func.func @main(%twox: tensor<2x4x4x4xf32>) -> (tensor<2x4x4x3xf32>, tensor<2x4x4x4xf32>) {
  %g = qnn.constant dense<[1.0, 2.0, 0.5, 1.5]> : tensor<4xf32>
  %b = qnn.constant dense<[0.1, -0.2, 0.3, 0.0]> : tensor<4xf32>
  %0 = qnn.scale %twox, %g, %b {name = "sc", axis = 3 : i64} : (tensor<2x4x4x4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x4x4x4xf32>
  %w = qnn.constant dense<[[0.25, 0.79, 0.55, -0.55], [-0.40, 0.75, -0.99, 0.64], [0.59, -0.06, -0.39, -0.44]]> : tensor<3x4xf32>
  %1 = qnn.dense %0, %w {name = "fc"} : (tensor<2x4x4x4xf32>, tensor<3x4xf32>) -> tensor<2x4x4x3xf32>
  %2 = qnn.relu %0 : (tensor<2x4x4x4xf32>) -> tensor<2x4x4x4xf32>
  func.return %1, %2 : tensor<2x4x4x3xf32>, tensor<2x4x4x4xf32>
}

// -----

// Rules 1, 5: a padded 2-D conv after a batch norm (channel axis 1); 1/s folds into the
// BN's scale and bias (its mean and variance stay), the zero padding stays exact.
// CHECK-LABEL: func.func @main(%bnx
// CHECK-DAG: %[[G:.*]] = qnn.constant {{.*}} {name = "bn.scale_balanced"}
// CHECK-DAG: %[[B:.*]] = qnn.constant {{.*}} {name = "bn.bias_balanced"}
// CHECK: %[[N:.*]] = qnn.batch_norm %bnx, %[[G]], %[[B]], %m, %v {name = "bn",
// CHECK-NEXT: %[[W:.*]] = qnn.constant {{.*}} : tensor<2x4x2x2xf32> {name = "c.weight_balanced"}
// CHECK-NEXT: qnn.conv %[[N]], %[[W]] {name = "c", qcc.balance_factor = array<f64: {{.*}}>, strides
// CHECK-NOT: qnn.scale
func.func @main(%bnx: tensor<2x4x4x4xf32>) -> tensor<2x2x5x5xf32> {
  %g = qnn.constant dense<[1.13, 1.40, 0.80, 0.95]> : tensor<4xf32>
  %b = qnn.constant dense<[0.2, -0.1, 0.0, 0.4]> : tensor<4xf32>
  %m = qnn.constant dense<[0.1, 0.5, -0.2, 0.0]> : tensor<4xf32>
  %v = qnn.constant dense<[1.28, 0.73, 1.10, 0.90]> : tensor<4xf32>
  %0 = qnn.batch_norm %bnx, %g, %b, %m, %v {name = "bn", epsilon = 1.0e-05 : f64} : (tensor<2x4x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x4x4x4xf32>
  %w = qnn.constant dense<[[[[0.61, 0.62], [0.03, -0.43]], [[-0.89, -0.23], [-0.18, -0.91]], [[-0.90, 1.00], [0.30, -0.53]], [[-0.13, 0.95], [0.80, 0.69]]], [[[-0.22, -0.01], [0.35, -0.88]], [[0.11, -0.46], [0.76, -0.87]], [[0.36, 0.74], [-0.55, 0.79]], [[0.74, -0.96], [0.41, -1.00]]]]> : tensor<2x4x2x2xf32>
  %1 = qnn.conv %0, %w {name = "c", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<2x4x4x4xf32>, tensor<2x4x2x2xf32>) -> tensor<2x2x5x5xf32>
  func.return %1 : tensor<2x2x5x5xf32>
}

// -----

// Must not fire (rule 1): a grouped conv is left alone (a remark says why).
// CHECK-LABEL: func.func @main(%gcx
// CHECK-NEXT: %[[W:.*]] = qnn.constant
// CHECK-NEXT: %[[Y:.*]] = qnn.conv %gcx, %[[W]] {name = "grouped", strides
// CHECK-NEXT: func.return %[[Y]]
// CHECK-NOT: balance
func.func @main(%gcx: tensor<2x4x4x4xf32>) -> tensor<2x4x4x4xf32> {
  %w = qnn.constant dense<[[[[0.01]], [[-0.13]]], [[[-0.59]], [[-0.35]]], [[[0.61]], [[-0.37]]], [[[-0.70]], [[0.40]]]]> : tensor<4x2x1x1xf32>
  %0 = qnn.conv %gcx, %w {name = "grouped", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<2x4x4x4xf32>, tensor<4x2x1x1xf32>) -> tensor<2x4x4x4xf32>
  func.return %0 : tensor<2x4x4x4xf32>
}

// -----

// Must not fire (rule 1): two layers share one weight constant (a remark says why).
// CHECK-LABEL: func.func @main(%swx
// CHECK-NEXT: %[[W:.*]] = qnn.constant
// CHECK-NEXT: %[[R:.*]] = qnn.relu %swx
// CHECK-NEXT: %[[A:.*]] = qnn.dense %swx, %[[W]] {name = "tied_a"}
// CHECK-NEXT: %[[B:.*]] = qnn.dense %[[R]], %[[W]] {name = "tied_b"}
// CHECK-NEXT: func.return %[[A]], %[[B]]
// CHECK-NOT: balance
func.func @main(%swx: tensor<2x4x4x4xf32>) -> (tensor<2x4x4x3xf32>, tensor<2x4x4x3xf32>) {
  %w = qnn.constant dense<[[0.25, 0.79, 0.55, -0.55], [-0.40, 0.75, -0.99, 0.64], [0.59, -0.06, -0.39, -0.44]]> : tensor<3x4xf32>
  %r = qnn.relu %swx : (tensor<2x4x4x4xf32>) -> tensor<2x4x4x4xf32>
  %0 = qnn.dense %swx, %w {name = "tied_a"} : (tensor<2x4x4x4xf32>, tensor<3x4xf32>) -> tensor<2x4x4x3xf32>
  %1 = qnn.dense %r, %w {name = "tied_b"} : (tensor<2x4x4x4xf32>, tensor<3x4xf32>) -> tensor<2x4x4x3xf32>
  func.return %0, %1 : tensor<2x4x4x3xf32>, tensor<2x4x4x3xf32>
}
