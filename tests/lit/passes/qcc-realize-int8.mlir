// RUN: qcc-opt %s --split-input-file -p 'qcc-realize-int8' | filecheck %s
// RUN: qcc-opt %s --split-input-file -p 'qcc-realize-int8{commute=true}' | filecheck %s --check-prefix=COMMUTE

// Rules 1-5: quantize the input, weight and bias; i32 accumulator per output
// channel; the relu between two layers is folded into one requantize (z = qmin,
// so the clamp leaves the type as it is); the module's output is dequantized.
// CHECK-LABEL: func.func @conv_relu_conv
// CHECK-NEXT: %[[W1:.*]] = qnn.constant
// CHECK-NEXT: %[[B1:.*]] = qnn.constant
// CHECK-NEXT: %[[X:.*]] = quant.quantize %x {qtype = !quant.uniform<i8:f32, 0.02:-3>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.02:-3>>
// CHECK-NEXT: %[[WQ1:.*]] = quant.quantize %[[W1]] {qtype = !quant.uniform<i8<-127:127>:f32:0, {0.00390625,0.005859375,0.0078125}>}
// CHECK-NEXT: %[[BQ1:.*]] = quant.quantize %[[B1]] {qtype = !quant.uniform<i32:f32:0, {7.8125e-05,0.0001171875,0.00015625}>} : (tensor<3xf32>) -> tensor<3x!quant.uniform<i32:f32:0, {7.8125e-05,0.0001171875,0.00015625}>>
// CHECK-NEXT: %[[ACC1:.*]] = qnn.conv %[[X]], %[[WQ1]], %[[BQ1]] {name = "c1", {{.*}}} : ({{.*}}) -> tensor<1x3x4x4x!quant.uniform<i32:f32:1, {7.8125e-05,0.0001171875,0.00015625}>>
// CHECK-NEXT: %[[Y1:.*]] = quant.requantize %[[ACC1]] {qtype = !quant.uniform<i8:f32, 0.01:-128>} : (tensor<1x3x4x4x!quant.uniform<i32:f32:1, {7.8125e-05,0.0001171875,0.00015625}>>) -> tensor<1x3x4x4x!quant.uniform<i8:f32, 0.01:-128>>
// CHECK-NEXT: %[[W2:.*]] = qnn.constant
// CHECK-NEXT: %[[WQ2:.*]] = quant.quantize %[[W2]] {qtype = !quant.uniform<i8<-127:127>:f32, 0.0078125>}
// CHECK-NEXT: %[[ACC2:.*]] = qnn.conv %[[Y1]], %[[WQ2]] {name = "c2", {{.*}}} : ({{.*}}) -> tensor<1x2x4x4x!quant.uniform<i32:f32, 7.8125e-05>>
// CHECK-NEXT: %[[F:.*]] = quant.dequantize %[[ACC2]] : (tensor<1x2x4x4x!quant.uniform<i32:f32, 7.8125e-05>>) -> tensor<1x2x4x4xf32>
// CHECK-NEXT: func.return %[[F]] : tensor<1x2x4x4xf32>
// CHECK-NOT: quant.fake_quant
// CHECK-NOT: qnn.relu
func.func @conv_relu_conv(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %w1 = qnn.constant dense<[[[[0.5]], [[-0.25]]], [[[0.125]], [[0.75]]], [[[-1.0]], [[0.5]]]]> : tensor<3x2x1x1xf32>
  %b1 = qnn.constant dense<[0.1, -0.2, 0.3]> : tensor<3xf32>
  %xq = quant.fake_quant %x {id = "c1.input", qtype = !quant.uniform<i8:f32, 0.02:-3>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %w1q = quant.fake_quant %w1 {id = "c1.weight", qtype = !quant.uniform<i8<-127:127>:f32:0, {0.00390625,0.005859375,0.0078125}>} : (tensor<3x2x1x1xf32>) -> tensor<3x2x1x1xf32>
  %0 = qnn.conv %xq, %w1q, %b1 {name = "c1", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>, tensor<3xf32>) -> tensor<1x3x4x4xf32>
  %1 = qnn.relu %0 {name = "r1"} : (tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
  %w2 = qnn.constant dense<[[[[0.5]], [[-0.25]], [[1.0]]], [[[0.25]], [[0.75]], [[-0.5]]]]> : tensor<2x3x1x1xf32>
  %q1 = quant.fake_quant %1 {id = "c2.input", qtype = !quant.uniform<i8:f32, 0.01:-128>} : (tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
  %w2q = quant.fake_quant %w2 {id = "c2.weight", qtype = !quant.uniform<i8<-127:127>:f32, 0.0078125>} : (tensor<2x3x1x1xf32>) -> tensor<2x3x1x1xf32>
  %2 = qnn.conv %q1, %w2q {name = "c2", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x4x4xf32>, tensor<2x3x1x1xf32>) -> tensor<1x2x4x4xf32>
  func.return %2 : tensor<1x2x4x4xf32>
}

// -----

// Rule 5: a relu whose next input has zero point -3 becomes the clamp [-3, 127]
// in the storage range of the requantize's type (and of the next layer's input).
// CHECK-LABEL: func.func @relu_clamp
// CHECK: %[[ACC:.*]] = qnn.dense
// CHECK-NEXT: %[[Y:.*]] = quant.requantize %[[ACC]] {qtype = !quant.uniform<i8<-3:127>:f32, 0.05:-3>}
// CHECK: qnn.dense %[[Y]], {{.*}} : (tensor<1x3x!quant.uniform<i8<-3:127>:f32, 0.05:-3>>, tensor<2x3x!quant.uniform<i8<-127:127>:f32, 0.0078125>>) -> tensor<1x2x!quant.uniform<i32:f32, 0.000390625>>
// CHECK-NOT: qnn.relu
func.func @relu_clamp(%x: tensor<1x2xf32>) -> tensor<1x2xf32> {
  %w1 = qnn.constant dense<[[0.5, -0.25], [0.125, 0.75], [-1.0, 0.5]]> : tensor<3x2xf32>
  %w2 = qnn.constant dense<[[0.5, -0.25, 1.0], [0.25, 0.75, -0.5]]> : tensor<2x3xf32>
  %xq = quant.fake_quant %x {id = "d1.input", qtype = !quant.uniform<i8:f32, 0.02>} : (tensor<1x2xf32>) -> tensor<1x2xf32>
  %w1q = quant.fake_quant %w1 {id = "d1.weight", qtype = !quant.uniform<i8<-127:127>:f32, 0.0078125>} : (tensor<3x2xf32>) -> tensor<3x2xf32>
  %0 = qnn.dense %xq, %w1q {name = "d1"} : (tensor<1x2xf32>, tensor<3x2xf32>) -> tensor<1x3xf32>
  %1 = qnn.relu %0 : (tensor<1x3xf32>) -> tensor<1x3xf32>
  %q1 = quant.fake_quant %1 {id = "d2.input", qtype = !quant.uniform<i8:f32, 0.05:-3>} : (tensor<1x3xf32>) -> tensor<1x3xf32>
  %w2q = quant.fake_quant %w2 {id = "d2.weight", qtype = !quant.uniform<i8<-127:127>:f32, 0.0078125>} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  %2 = qnn.dense %q1, %w2q {name = "d2"} : (tensor<1x3xf32>, tensor<2x3xf32>) -> tensor<1x2xf32>
  func.return %2 : tensor<1x2xf32>
}

// -----

// Rule 6: a layer whose input is not fake-quantized stays float, its weight
// fake_quant included (the pass remarks why).
// CHECK-LABEL: func.func @float_layer_stays_float
// CHECK-NEXT: %[[W:.*]] = qnn.constant
// CHECK-NEXT: %[[WF:.*]] = quant.fake_quant %[[W]]
// CHECK-NEXT: %[[Y:.*]] = qnn.dense %x, %[[WF]] {name = "d"} : (tensor<1x2xf32>, tensor<3x2xf32>) -> tensor<1x3xf32>
// CHECK-NEXT: func.return %[[Y]]
// CHECK-NOT: quant.quantize
func.func @float_layer_stays_float(%x: tensor<1x2xf32>) -> tensor<1x3xf32> {
  %w = qnn.constant dense<[[0.5, -0.25], [0.125, 0.75], [-1.0, 0.5]]> : tensor<3x2xf32>
  %wq = quant.fake_quant %w {id = "d.weight", qtype = !quant.uniform<i8<-127:127>:f32, 0.0078125>} : (tensor<3x2xf32>) -> tensor<3x2xf32>
  %0 = qnn.dense %x, %wq {name = "d"} : (tensor<1x2xf32>, tensor<3x2xf32>) -> tensor<1x3xf32>
  func.return %0 : tensor<1x3xf32>
}

// -----

// Rules 4 and 6: an add between two layers runs in float on the dequantized
// accumulator; the next layer quantizes the sum. A relu whose output also feeds the
// add is not folded (the add needs it in float).
// CHECK-LABEL: func.func @float_op_between
// CHECK: %[[ACC:.*]] = qnn.dense
// CHECK-NEXT: %[[F:.*]] = quant.dequantize %[[ACC]] : (tensor<1x3x!quant.uniform<i32:f32:1, {{.*}}>>) -> tensor<1x3xf32>
// CHECK-NEXT: %[[R:.*]] = qnn.relu %[[F]]
// CHECK-NEXT: %[[S:.*]] = qnn.add %[[R]], %[[R]]
// CHECK-NEXT: %[[SQ:.*]] = quant.quantize %[[S]] {qtype = !quant.uniform<i8:f32, 0.05:-128>}
// CHECK: %[[RQ:.*]] = quant.quantize %[[R]] {qtype = !quant.uniform<i8:f32, 0.025:-128>}
// CHECK: qnn.dense %[[SQ]]
// CHECK: qnn.dense %[[RQ]]
// CHECK-NOT: quant.requantize
func.func @float_op_between(%x: tensor<1x2xf32>) -> (tensor<1x2xf32>, tensor<1x2xf32>) {
  %w1 = qnn.constant dense<[[0.5, -0.25], [0.125, 0.75], [-1.0, 0.5]]> : tensor<3x2xf32>
  %w2 = qnn.constant dense<[[0.5, -0.25, 1.0], [0.25, 0.75, -0.5]]> : tensor<2x3xf32>
  %xq = quant.fake_quant %x {id = "d1.input", qtype = !quant.uniform<i8:f32, 0.02>} : (tensor<1x2xf32>) -> tensor<1x2xf32>
  %w1q = quant.fake_quant %w1 {id = "d1.weight", qtype = !quant.uniform<i8<-127:127>:f32:0, {0.00390625,0.005859375,0.0078125}>} : (tensor<3x2xf32>) -> tensor<3x2xf32>
  %0 = qnn.dense %xq, %w1q {name = "d1"} : (tensor<1x2xf32>, tensor<3x2xf32>) -> tensor<1x3xf32>
  %1 = qnn.relu %0 : (tensor<1x3xf32>) -> tensor<1x3xf32>
  %2 = qnn.add %1, %1 : (tensor<1x3xf32>, tensor<1x3xf32>) -> tensor<1x3xf32>
  %q2 = quant.fake_quant %2 {id = "d2.input", qtype = !quant.uniform<i8:f32, 0.05:-128>} : (tensor<1x3xf32>) -> tensor<1x3xf32>
  %q1 = quant.fake_quant %1 {id = "d3.input", qtype = !quant.uniform<i8:f32, 0.025:-128>} : (tensor<1x3xf32>) -> tensor<1x3xf32>
  %w2q = quant.fake_quant %w2 {id = "d2.weight", qtype = !quant.uniform<i8<-127:127>:f32, 0.0078125>} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  %3 = qnn.dense %q2, %w2q {name = "d2"} : (tensor<1x3xf32>, tensor<2x3xf32>) -> tensor<1x2xf32>
  %4 = qnn.dense %q1, %w2q {name = "d3"} : (tensor<1x3xf32>, tensor<2x3xf32>) -> tensor<1x2xf32>
  func.return %3, %4 : tensor<1x2xf32>, tensor<1x2xf32>
}

// -----

// Rule 1: two layers reading one fake_quant share one quantize; dense on a rank-3
// input accumulates per channel on the last axis.
// CHECK-LABEL: func.func @shared_input
// CHECK: %[[X:.*]] = quant.quantize %x
// CHECK-NOT: quant.quantize %x
// CHECK: qnn.dense %[[X]], {{.*}} -> tensor<1x2x3x!quant.uniform<i32:f32:2, {7.8125e-05,0.0001171875,0.00015625}>>
// CHECK: qnn.dense %[[X]], {{.*}} -> tensor<1x2x3x!quant.uniform<i32:f32:2, {7.8125e-05,0.0001171875,0.00015625}>>
func.func @shared_input(%x: tensor<1x2x2xf32>) -> (tensor<1x2x3xf32>, tensor<1x2x3xf32>) {
  %w = qnn.constant dense<[[0.5, -0.25], [0.125, 0.75], [-1.0, 0.5]]> : tensor<3x2xf32>
  %xq = quant.fake_quant %x {id = "d.input", qtype = !quant.uniform<i8:f32, 0.02:5>} : (tensor<1x2x2xf32>) -> tensor<1x2x2xf32>
  %wq = quant.fake_quant %w {id = "d.weight", qtype = !quant.uniform<i8<-127:127>:f32:0, {0.00390625,0.005859375,0.0078125}>} : (tensor<3x2xf32>) -> tensor<3x2xf32>
  %0 = qnn.dense %xq, %wq {name = "a"} : (tensor<1x2x2xf32>, tensor<3x2xf32>) -> tensor<1x2x3xf32>
  %1 = qnn.dense %xq, %wq {name = "b"} : (tensor<1x2x2xf32>, tensor<3x2xf32>) -> tensor<1x2x3xf32>
  func.return %0, %1 : tensor<1x2x3xf32>, tensor<1x2x3xf32>
}

// -----

// Two activations: qnn.matmul gives a per-tensor accumulator of scale s_a * s_b.
// CHECK-LABEL: func.func @matmul
// CHECK-NEXT: %[[A:.*]] = quant.quantize %a {qtype = !quant.uniform<i8:f32, 0.5:3>}
// CHECK-NEXT: %[[B:.*]] = quant.quantize %b {qtype = !quant.uniform<i8:f32, 0.25:-7>}
// CHECK-NEXT: %[[ACC:.*]] = qnn.matmul %[[A]], %[[B]] {name = "mm"} : (tensor<2x3x!quant.uniform<i8:f32, 0.5:3>>, tensor<3x4x!quant.uniform<i8:f32, 0.25:-7>>) -> tensor<2x4x!quant.uniform<i32:f32, 0.125>>
// CHECK-NEXT: %[[F:.*]] = quant.dequantize %[[ACC]]
// CHECK-NEXT: func.return %[[F]]
func.func @matmul(%a: tensor<2x3xf32>, %b: tensor<3x4xf32>) -> tensor<2x4xf32> {
  %aq = quant.fake_quant %a {id = "mm.input0", qtype = !quant.uniform<i8:f32, 0.5:3>} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  %bq = quant.fake_quant %b {id = "mm.input1", qtype = !quant.uniform<i8:f32, 0.25:-7>} : (tensor<3x4xf32>) -> tensor<3x4xf32>
  %0 = qnn.matmul %aq, %bq {name = "mm"} : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
  func.return %0 : tensor<2x4xf32>
}

// -----

// A symbolic contracting dim (attention's sequence) bounds no int32 sum: float stays.
// CHECK-LABEL: func.func @matmul_symbolic_contracting_dim
// CHECK-NOT: quant.quantize
// CHECK: qnn.matmul %{{.*}}, %{{.*}} {name = "mm"} : (tensor<2x?xf32>, tensor<?x4xf32>) -> tensor<2x4xf32>
func.func @matmul_symbolic_contracting_dim(%a: tensor<2x?xf32>, %b: tensor<?x4xf32>) -> tensor<2x4xf32> {
  %aq = quant.fake_quant %a {id = "mm.input0", qtype = !quant.uniform<i8:f32, 0.5:3>} : (tensor<2x?xf32>) -> tensor<2x?xf32>
  %bq = quant.fake_quant %b {id = "mm.input1", qtype = !quant.uniform<i8:f32, 0.25:-7>} : (tensor<?x4xf32>) -> tensor<?x4xf32>
  %0 = qnn.matmul %aq, %bq {name = "mm"} : (tensor<2x?xf32>, tensor<?x4xf32>) -> tensor<2x4xf32>
  func.return %0 : tensor<2x4xf32>
}

// -----

// qnn.avg_pool on a quantized input keeps the input's type.
// CHECK-LABEL: func.func @avg_pool
// CHECK-NEXT: %[[X:.*]] = quant.quantize %x
// CHECK-NEXT: %[[P:.*]] = qnn.avg_pool %[[X]] {{.*}} : (tensor<1x1x4x4x!quant.uniform<i8:f32, 0.1:-2>>) -> tensor<1x1x2x2x!quant.uniform<i8:f32, 0.1:-2>>
// CHECK-NEXT: %[[F:.*]] = quant.dequantize %[[P]] : (tensor<1x1x2x2x!quant.uniform<i8:f32, 0.1:-2>>) -> tensor<1x1x2x2xf32>
// CHECK-NEXT: func.return %[[F]]
func.func @avg_pool(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x2x2xf32> {
  %xq = quant.fake_quant %x {id = "p.input", qtype = !quant.uniform<i8:f32, 0.1:-2>} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %0 = qnn.avg_pool %xq {name = "p", kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = false, count_include_pad = false} : (tensor<1x1x4x4xf32>) -> tensor<1x1x2x2xf32>
  func.return %0 : tensor<1x1x2x2xf32>
}

// -----

// A conv_transpose weight quantized per channel on axis 1 accumulates per channel.
// CHECK-LABEL: func.func @conv_transpose
// CHECK: qnn.conv_transpose {{.*}} -> tensor<1x2x3x3x!quant.uniform<i32:f32:1, {0.0001953125,0.000390625}>>
func.func @conv_transpose(%x: tensor<1x1x2x2xf32>) -> tensor<1x2x3x3xf32> {
  %w = qnn.constant dense<[[[[0.5, -0.25], [0.125, 0.75]], [[-1.0, 0.5], [0.25, 0.0]]]]> : tensor<1x2x2x2xf32>
  %xq = quant.fake_quant %x {id = "t.input", qtype = !quant.uniform<i8:f32, 0.05>} : (tensor<1x1x2x2xf32>) -> tensor<1x1x2x2xf32>
  %wq = quant.fake_quant %w {id = "t.weight", qtype = !quant.uniform<i8<-127:127>:f32:1, {0.00390625,0.0078125}>} : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %0 = qnn.conv_transpose %xq, %wq {name = "t", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, output_padding = array<i64: 0, 0>, groups = 1 : i64} : (tensor<1x1x2x2xf32>, tensor<1x2x2x2xf32>) -> tensor<1x2x3x3xf32>
  func.return %0 : tensor<1x2x3x3xf32>
}

// -----

// A max_pool between the layers: by default dequantize, relu and max_pool in float,
// then quantize; with `commute` the requantize comes first and max_pool runs on
// the integers.
// CHECK-LABEL: func.func @relu_max_pool
// CHECK: %[[ACC:.*]] = qnn.conv
// CHECK-NEXT: %[[F:.*]] = quant.dequantize %[[ACC]]
// CHECK-NEXT: %[[R:.*]] = qnn.relu %[[F]]
// CHECK-NEXT: %[[P:.*]] = qnn.max_pool %[[R]]
// CHECK-NEXT: quant.quantize %[[P]]
// COMMUTE-LABEL: func.func @relu_max_pool
// COMMUTE: %[[ACC:.*]] = qnn.conv
// COMMUTE-NEXT: %[[Y:.*]] = quant.requantize %[[ACC]] {qtype = !quant.uniform<i8<-1:127>:f32, 0.01:-1>}
// COMMUTE-NEXT: %[[P:.*]] = qnn.max_pool %[[Y]] {name = "mp", {{.*}}} : (tensor<1x2x4x4x!quant.uniform<i8<-1:127>:f32, 0.01:-1>>) -> tensor<1x2x2x2x!quant.uniform<i8<-1:127>:f32, 0.01:-1>>
// COMMUTE: qnn.conv %[[P]]
// COMMUTE-NOT: qnn.relu
// COMMUTE-NOT: quant.dequantize %[[ACC]]
func.func @relu_max_pool(%x: tensor<1x2x4x4xf32>) -> tensor<1x1x2x2xf32> {
  %w1 = qnn.constant dense<[[[[0.5]], [[-0.25]]], [[[0.125]], [[0.75]]]]> : tensor<2x2x1x1xf32>
  %w2 = qnn.constant dense<[[[[0.5]], [[-0.25]]]]> : tensor<1x2x1x1xf32>
  %xq = quant.fake_quant %x {id = "c1.input", qtype = !quant.uniform<i8:f32, 0.02:-3>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %w1q = quant.fake_quant %w1 {id = "c1.weight", qtype = !quant.uniform<i8<-127:127>:f32, 0.0078125>} : (tensor<2x2x1x1xf32>) -> tensor<2x2x1x1xf32>
  %0 = qnn.conv %xq, %w1q {name = "c1", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<2x2x1x1xf32>) -> tensor<1x2x4x4xf32>
  %1 = qnn.relu %0 : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %2 = qnn.max_pool %1 {name = "mp", kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = false} : (tensor<1x2x4x4xf32>) -> tensor<1x2x2x2xf32>
  %q2 = quant.fake_quant %2 {id = "c2.input", qtype = !quant.uniform<i8:f32, 0.01:-1>} : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %w2q = quant.fake_quant %w2 {id = "c2.weight", qtype = !quant.uniform<i8<-127:127>:f32, 0.0078125>} : (tensor<1x2x1x1xf32>) -> tensor<1x2x1x1xf32>
  %3 = qnn.conv %q2, %w2q {name = "c2", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x2x2xf32>, tensor<1x2x1x1xf32>) -> tensor<1x1x2x2xf32>
  func.return %3 : tensor<1x1x2x2xf32>
}
