// RUN: qcc-opt %s --split-input-file -p qcc-insert-quant | filecheck %s

// Attention masks are recognised from the graph (qcc/passes/masks.py, insert-quant
// rule 4): a layer reading a mask or masked scores gets no observer and stays float.

// An additive mask (1 - m) * -1e9 added to the scores before the softmax: the layer
// reading the masked scores directly (context) stays float; the softmax output is a
// plain activation (attend.input0 is observed).
// CHECK-LABEL: func.func @additive
// CHECK: %[[MS:.*]] = qnn.add %{{.*}}, %mask {name = "masked"}
// CHECK-NEXT: %[[P:.*]] = qnn.softmax %[[MS]]
// CHECK-NEXT: %[[OP:.*]] = quant.observe %[[P]] {{.*}}id = "attend.input0"
// CHECK-NEXT: qnn.matmul %[[OP]], %{{.*}} {name = "attend"}
// CHECK-NEXT: qnn.matmul %[[MS]], %k {name = "context"}
func.func @additive(%q: tensor<1x4x4xf32>, %k: tensor<1x4x4xf32>, %m: tensor<1x1x4xf32>) -> (tensor<1x4x4xf32>, tensor<1x4x4xf32>) {
  %one = qnn.constant dense<1.0> : tensor<f32> {name = "one"}
  %big = qnn.constant dense<-1.0e9> : tensor<f32> {name = "big"}
  %inv = qnn.sub %one, %m {name = "inv"} : (tensor<f32>, tensor<1x1x4xf32>) -> tensor<1x1x4xf32>
  %mask = qnn.mul %inv, %big {name = "mask"} : (tensor<1x1x4xf32>, tensor<f32>) -> tensor<1x1x4xf32>
  %s = qnn.matmul %q, %k {name = "scores"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %ms = qnn.add %s, %mask {name = "masked"} : (tensor<1x4x4xf32>, tensor<1x1x4xf32>) -> tensor<1x4x4xf32>
  %p = qnn.softmax %ms {name = "softmax", axis = 2 : i64} : (tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %y = qnn.matmul %p, %k {name = "attend"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %z = qnn.matmul %ms, %k {name = "context"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  func.return %y, %z : tensor<1x4x4xf32>, tensor<1x4x4xf32>
}

// -----

// A mask applied through Where(m, scores, finfo(float32).min), then a scaling by a
// constant on the way to the softmax: both the where result and the scaled scores
// are masked; the layer reading the scaled ones stays float.
// CHECK-LABEL: func.func @where
// CHECK: %[[W:.*]] = qnn.where %m, %{{.*}}, %min {name = "masked"}
// CHECK-NEXT: %[[D:.*]] = qnn.div %[[W]], %t
// CHECK-NEXT: qnn.softmax %[[D]]
// CHECK-NEXT: qnn.matmul %[[D]], %k {name = "context"}
func.func @where(%q: tensor<1x4x4xf32>, %k: tensor<1x4x4xf32>, %m: tensor<1x4x4xi1>) -> (tensor<1x4x4xf32>, tensor<1x4x4xf32>) {
  %min = qnn.constant dense<-3.40282347e+38> : tensor<f32> {name = "min"}
  %t = qnn.constant dense<2.0> : tensor<f32> {name = "t"}
  %s = qnn.matmul %q, %k {name = "scores"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %w = qnn.where %m, %s, %min {name = "masked"} : (tensor<1x4x4xi1>, tensor<1x4x4xf32>, tensor<f32>) -> tensor<1x4x4xf32>
  %d = qnn.div %w, %t {name = "scaled"} : (tensor<1x4x4xf32>, tensor<f32>) -> tensor<1x4x4xf32>
  %p = qnn.softmax %d {name = "softmax", axis = 2 : i64} : (tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %z = qnn.matmul %d, %k {name = "context"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  func.return %p, %z : tensor<1x4x4xf32>, tensor<1x4x4xf32>
}

// -----

// A precomputed causal mask (a constant holding finfo(float32).min above the diagonal) added
// before the softmax; the mask itself is read by a layer too (maskmm): float.
// CHECK-LABEL: func.func @causal
// CHECK: %[[MS:.*]] = qnn.add %causal, %{{.*}} {name = "masked"}
// CHECK-NEXT: qnn.softmax %[[MS]]
// CHECK-NEXT: qnn.matmul %causal, %k {name = "maskmm"}
// CHECK-NOT: quant.observe %causal
func.func @causal(%q: tensor<1x4x4xf32>, %k: tensor<1x4x4xf32>) -> (tensor<1x4x4xf32>, tensor<1x4x4xf32>) {
  %causal = qnn.constant dense<[[[0.0, -3.40282347e+38, -3.40282347e+38, -3.40282347e+38], [0.0, 0.0, -3.40282347e+38, -3.40282347e+38], [0.0, 0.0, 0.0, -3.40282347e+38], [0.0, 0.0, 0.0, 0.0]]]> : tensor<1x4x4xf32> {name = "causal"}
  %s = qnn.matmul %q, %k {name = "scores"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %ms = qnn.add %causal, %s {name = "masked"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %p = qnn.softmax %ms {name = "softmax", axis = 2 : i64} : (tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %z = qnn.matmul %causal, %k {name = "maskmm"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  func.return %p, %z : tensor<1x4x4xf32>, tensor<1x4x4xf32>
}

// -----

// Must not fire: a small constant added before the softmax (-100 > -1e4) is a bias,
// and a -1e9 constant added on a path that reaches no softmax is a real value; both
// layers reading those sums are observed.
// CHECK-LABEL: func.func @not_masks
// CHECK: %[[B:.*]] = qnn.add %{{.*}}, %small {name = "biased"}
// CHECK: quant.observe %[[B]] {{.*}}id = "context.input0"
// CHECK: %[[L:.*]] = qnn.add %{{.*}}, %big {name = "shifted"}
// CHECK: quant.observe %[[L]] {{.*}}id = "other.input0"
func.func @not_masks(%q: tensor<1x4x4xf32>, %k: tensor<1x4x4xf32>) -> (tensor<1x4x4xf32>, tensor<1x4x4xf32>, tensor<1x4x4xf32>) {
  %small = qnn.constant dense<-100.0> : tensor<f32> {name = "small"}
  %big = qnn.constant dense<-1.0e9> : tensor<f32> {name = "big"}
  %s = qnn.matmul %q, %k {name = "scores"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %b = qnn.add %s, %small {name = "biased"} : (tensor<1x4x4xf32>, tensor<f32>) -> tensor<1x4x4xf32>
  %p = qnn.softmax %b {name = "softmax", axis = 2 : i64} : (tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %z = qnn.matmul %b, %k {name = "context"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %l = qnn.add %s, %big {name = "shifted"} : (tensor<1x4x4xf32>, tensor<f32>) -> tensor<1x4x4xf32>
  %o = qnn.matmul %l, %k {name = "other"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  func.return %p, %z, %o : tensor<1x4x4xf32>, tensor<1x4x4xf32>, tensor<1x4x4xf32>
}

// -----

// Two masks in a row: Where(m, scores, finfo.min) and then an additive causal mask.
// The where result carries a large constant too, but it is computed from a layer
// (the scores), so the add's other operand is the mask and both sums are masked.
// CHECK-LABEL: func.func @two_masks
// CHECK: %[[W:.*]] = qnn.where %m, %{{.*}}, %min {name = "padded"}
// CHECK-NEXT: %[[MS:.*]] = qnn.add %[[W]], %causal {name = "masked"}
// CHECK-NEXT: qnn.softmax %[[MS]]
// CHECK-NEXT: qnn.matmul %[[W]], %k {name = "context"}
func.func @two_masks(%q: tensor<1x4x4xf32>, %k: tensor<1x4x4xf32>, %m: tensor<1x4x4xi1>) -> (tensor<1x4x4xf32>, tensor<1x4x4xf32>) {
  %min = qnn.constant dense<-3.40282347e+38> : tensor<f32> {name = "min"}
  %causal = qnn.constant dense<[[[0.0, -1.0e4, -1.0e4, -1.0e4], [0.0, 0.0, -1.0e4, -1.0e4], [0.0, 0.0, 0.0, -1.0e4], [0.0, 0.0, 0.0, 0.0]]]> : tensor<1x4x4xf32> {name = "causal"}
  %s = qnn.matmul %q, %k {name = "scores"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %w = qnn.where %m, %s, %min {name = "padded"} : (tensor<1x4x4xi1>, tensor<1x4x4xf32>, tensor<f32>) -> tensor<1x4x4xf32>
  %ms = qnn.add %w, %causal {name = "masked"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %p = qnn.softmax %ms {name = "softmax", axis = 2 : i64} : (tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  %z = qnn.matmul %w, %k {name = "context"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  func.return %p, %z : tensor<1x4x4xf32>, tensor<1x4x4xf32>
}
