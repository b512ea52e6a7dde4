// RUN: qcc-opt %s --split-input-file -p qcc-lower-ascend | filecheck %s
// RUN: qcc-opt %s --split-input-file -p 'qcc-lower-ascend{dtype="f32" round_mode="Rint"}' | filecheck %s --check-prefix=F32

// Rules 1-4 on a layer: the input quantize, the weight, the requantize after the
// layer. Names follow AMCT: <layer>.quant, <layer>.dequant, <layer>.dequant.param.
// CHECK-LABEL: func.func @layer
// CHECK: %[[XQ:.*]] = ascend.quant %x {name = "c1.quant", scale = 5.000000e+01 : f32, offset = -3.000000e+00 : f32, sqrt_mode = false, round_mode = "Round", qtype = !quant.uniform<i8:f32, 0.02:-3>}
// CHECK: %[[WQ:.*]] = ascend.weight_quant %{{.*}} {qtype = !quant.uniform<i8<-127:127>:f32:0, {0.1,0.2}>}
// CHECK: %[[BQ:.*]] = quant.quantize %{{.*}} {qtype = !quant.uniform<i32:f32:0, {0.002,0.004}>}
// CHECK: %[[ACC:.*]] = qnn.conv %[[XQ]], %[[WQ]], %[[BQ]] {name = "c1"
// CHECK: %[[D:.*]] = qnn.constant dense<[990057071, 998445679]> : tensor<2xui64> {name = "c1.dequant.param"}
// CHECK: %[[F:.*]] = ascend.dequant %[[ACC]], %[[D]] {name = "c1.dequant", relu_flag = false, sqrt_mode = false, axis = 1 : i64, dtype = f16}
// CHECK: %[[Y:.*]] = ascend.quant %[[F]] {scale = 2.000000e+01 : f32, offset = 5.000000e+00 : f32, sqrt_mode = false, round_mode = "Round", qtype = !quant.uniform<i8:f32, 0.05:5>} : (tensor<1x2x2x2xf16>)
// CHECK-NOT: quant.requantize
// CHECK: func.return %[[Y]]
// F32-LABEL: func.func @layer
// F32: round_mode = "Rint"
// F32: ascend.dequant {{.*}} dtype = f32} {{.*}} -> tensor<1x2x2x2xf32>
func.func @layer(%x: tensor<1x3x2x2xf32>) -> tensor<1x2x2x2x!quant.uniform<i8:f32, 0.05:5>> {
  %w = qnn.constant dense<0.25> : tensor<2x3x1x1xf32>
  %b = qnn.constant dense<[0.5, -0.5]> : tensor<2xf32>
  %xq = quant.quantize %x {qtype = !quant.uniform<i8:f32, 0.02:-3>} : (tensor<1x3x2x2xf32>) -> tensor<1x3x2x2x!quant.uniform<i8:f32, 0.02:-3>>
  %wq = quant.quantize %w {qtype = !quant.uniform<i8<-127:127>:f32:0, {0.1,0.2}>} : (tensor<2x3x1x1xf32>) -> tensor<2x3x1x1x!quant.uniform<i8<-127:127>:f32:0, {0.1,0.2}>>
  %bq = quant.quantize %b {qtype = !quant.uniform<i32:f32:0, {0.002,0.004}>} : (tensor<2xf32>) -> tensor<2x!quant.uniform<i32:f32:0, {0.002,0.004}>>
  %acc = qnn.conv %xq, %wq, %bq {name = "c1", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x2x2x!quant.uniform<i8:f32, 0.02:-3>>, tensor<2x3x1x1x!quant.uniform<i8<-127:127>:f32:0, {0.1,0.2}>>, tensor<2x!quant.uniform<i32:f32:0, {0.002,0.004}>>) -> tensor<1x2x2x2x!quant.uniform<i32:f32:1, {0.002,0.004}>>
  %y = quant.requantize %acc {qtype = !quant.uniform<i8:f32, 0.05:5>} : (tensor<1x2x2x2x!quant.uniform<i32:f32:1, {0.002,0.004}>>) -> tensor<1x2x2x2x!quant.uniform<i8:f32, 0.05:5>>
  func.return %y : tensor<1x2x2x2x!quant.uniform<i8:f32, 0.05:5>>
}

// -----

// Rule 3: dequantize of the accumulator; f16 is cast back to the expressed type.
// CHECK-LABEL: func.func @dequantize
// CHECK-NEXT: %[[D:.*]] = qnn.constant dense<1056964608> : tensor<1xui64> {name = "acc.dequant.param"}
// CHECK-NEXT: %[[F:.*]] = ascend.dequant %acc, %[[D]] {name = "acc.dequant", relu_flag = false, sqrt_mode = false, axis = 1 : i64, dtype = f16} : (tensor<2x3x!quant.uniform<i32:f32, 0.5>>, tensor<1xui64>) -> tensor<2x3xf16>
// CHECK-NEXT: %[[C:.*]] = qnn.cast %[[F]] {name = "acc.dequant.cast", to = f32}
// CHECK-NEXT: func.return %[[C]]
// F32-LABEL: func.func @dequantize
// F32-NOT: qnn.cast
func.func @dequantize(%acc: tensor<2x3x!quant.uniform<i32:f32, 0.5>>) -> tensor<2x3xf32> {
  %f = quant.dequantize %acc : (tensor<2x3x!quant.uniform<i32:f32, 0.5>>) -> tensor<2x3xf32>
  func.return %f : tensor<2x3xf32>
}

// -----

// Rule 3: a relu that is the dequantize's only user becomes relu_flag.
// CHECK-LABEL: func.func @dequantize_relu
// CHECK: ascend.dequant %acc, %{{.*}} {name = "deq", relu_flag = true, sqrt_mode = false, axis = 1 : i64, dtype = f16}
// CHECK-NOT: qnn.relu
// CHECK: func.return
func.func @dequantize_relu(%acc: tensor<1x2x!quant.uniform<i32:f32:1, {0.001,0.002}>>) -> tensor<1x2xf32> {
  %f = quant.dequantize %acc {name = "deq"} : (tensor<1x2x!quant.uniform<i32:f32:1, {0.001,0.002}>>) -> tensor<1x2xf32>
  %r = qnn.relu %f {name = "relu"} : (tensor<1x2xf32>) -> tensor<1x2xf32>
  func.return %r : tensor<1x2xf32>
}

// -----

// A relu that is not the only user stays.
// CHECK-LABEL: func.func @dequantize_shared
// CHECK: ascend.dequant %acc, %{{.*}} {name = "acc.dequant", relu_flag = false
// CHECK: qnn.relu
func.func @dequantize_shared(%acc: tensor<4x!quant.uniform<i32:f32, 0.5>>) -> (tensor<4xf32>, tensor<4xf32>) {
  %f = quant.dequantize %acc : (tensor<4x!quant.uniform<i32:f32, 0.5>>) -> tensor<4xf32>
  %r = qnn.relu %f : (tensor<4xf32>) -> tensor<4xf32>
  func.return %f, %r : tensor<4xf32>, tensor<4xf32>
}

// -----

// Rule 4 with a relu folded into the requantize (storage range [z, 127]): relu_flag.
// CHECK-LABEL: func.func @requantize_relu
// CHECK: %[[F:.*]] = ascend.dequant %acc, %{{.*}} {name = "acc.dequant", relu_flag = true
// CHECK: ascend.quant %[[F]] {{.*}}qtype = !quant.uniform<i8<-5:127>:f32, 0.05:-5>}
func.func @requantize_relu(%acc: tensor<4x!quant.uniform<i32:f32, 0.001>>) -> tensor<4x!quant.uniform<i8<-5:127>:f32, 0.05:-5>> {
  %y = quant.requantize %acc {qtype = !quant.uniform<i8<-5:127>:f32, 0.05:-5>} : (tensor<4x!quant.uniform<i32:f32, 0.001>>) -> tensor<4x!quant.uniform<i8<-5:127>:f32, 0.05:-5>>
  func.return %y : tensor<4x!quant.uniform<i8<-5:127>:f32, 0.05:-5>>
}

// -----

// Rule 5: dequantize of a per-tensor i8 tensor.
// CHECK-LABEL: func.func @anti_quant
// CHECK-NEXT: %[[Y:.*]] = ascend.anti_quant %q {scale = 2.000000e-02 : f32, offset = 3.000000e+00 : f32, sqrt_mode = false, dtype = f32}
// CHECK-NEXT: func.return %[[Y]]
func.func @anti_quant(%q: tensor<4x!quant.uniform<i8:f32, 0.02:-3>>) -> tensor<4xf32> {
  %f = quant.dequantize %q : (tensor<4x!quant.uniform<i8:f32, 0.02:-3>>) -> tensor<4xf32>
  func.return %f : tensor<4xf32>
}

// -----

// Rule 1 with 1 / scale_d past float16's maximum: sqrt_mode.
// CHECK-LABEL: func.func @sqrt_mode
// CHECK: ascend.quant %x {scale = 1.000000e+03 : f32, offset = 0.000000e+00 : f32, sqrt_mode = true
func.func @sqrt_mode(%x: tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 1.0e-06>> {
  %q = quant.quantize %x {qtype = !quant.uniform<i8:f32, 1.0e-06>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 1.0e-06>>
  func.return %q : tensor<4x!quant.uniform<i8:f32, 1.0e-06>>
}

// -----

// Rule 6: i8 -> i8 requantize (an integer average pool's output) is
// AscendAntiQuant back to float, then AscendQuant for the next layer.
// CHECK-LABEL: func.func @requantize_i8
// CHECK: %[[P:.*]] = qnn.avg_pool %q
// CHECK: %[[F:.*]] = ascend.anti_quant %[[P]] {name = "pool.anti_quant", scale = 2.000000e-02 : f32, offset = 3.000000e+00 : f32, sqrt_mode = false, dtype = f16}
// CHECK: ascend.quant %[[F]] {scale = 2.500000e+01 : f32, offset = -1.000000e+00 : f32
// CHECK-NOT: quant.requantize
// F32: ascend.anti_quant {{.*}}dtype = f32}
func.func @requantize_i8(%q: tensor<1x1x4x4x!quant.uniform<i8:f32, 0.02:-3>>) -> tensor<1x1x2x2x!quant.uniform<i8:f32, 0.04:-1>> {
  %p = qnn.avg_pool %q {name = "pool", kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = false, count_include_pad = false} : (tensor<1x1x4x4x!quant.uniform<i8:f32, 0.02:-3>>) -> tensor<1x1x2x2x!quant.uniform<i8:f32, 0.02:-3>>
  %r = quant.requantize %p {qtype = !quant.uniform<i8:f32, 0.04:-1>} : (tensor<1x1x2x2x!quant.uniform<i8:f32, 0.02:-3>>) -> tensor<1x1x2x2x!quant.uniform<i8:f32, 0.04:-1>>
  func.return %r : tensor<1x1x2x2x!quant.uniform<i8:f32, 0.04:-1>>
}

// -----

// Not lowered: u8 and narrow-range activations, a narrow-range i8 -> i8
// requantize, per-axis i8 dequantize, i16.
// CHECK-LABEL: func.func @unchanged
// CHECK-NOT: ascend.
// CHECK: quant.quantize %x {qtype = !quant.uniform<u8:f32, 0.02:128>}
// CHECK: quant.quantize %x {qtype = !quant.uniform<i8<-127:127>:f32, 0.02>}
// CHECK: quant.quantize %x {qtype = !quant.uniform<i16:f32, 0.02>}
// CHECK: quant.requantize
// CHECK: quant.dequantize %w
// CHECK-NOT: ascend.
func.func @unchanged(%x: tensor<2xf32>, %q: tensor<2x!quant.uniform<i8<-127:127>:f32, 0.02>>, %w: tensor<2x!quant.uniform<i8:f32:0, {0.1,0.2}>>) -> (tensor<2x!quant.uniform<u8:f32, 0.02:128>>, tensor<2x!quant.uniform<i8<-127:127>:f32, 0.02>>, tensor<2x!quant.uniform<i16:f32, 0.02>>, tensor<2x!quant.uniform<i8:f32, 0.04>>, tensor<2xf32>) {
  %a = quant.quantize %x {qtype = !quant.uniform<u8:f32, 0.02:128>} : (tensor<2xf32>) -> tensor<2x!quant.uniform<u8:f32, 0.02:128>>
  %b = quant.quantize %x {qtype = !quant.uniform<i8<-127:127>:f32, 0.02>} : (tensor<2xf32>) -> tensor<2x!quant.uniform<i8<-127:127>:f32, 0.02>>
  %c = quant.quantize %x {qtype = !quant.uniform<i16:f32, 0.02>} : (tensor<2xf32>) -> tensor<2x!quant.uniform<i16:f32, 0.02>>
  %d = quant.requantize %q {qtype = !quant.uniform<i8:f32, 0.04>} : (tensor<2x!quant.uniform<i8<-127:127>:f32, 0.02>>) -> tensor<2x!quant.uniform<i8:f32, 0.04>>
  %e = quant.dequantize %w : (tensor<2x!quant.uniform<i8:f32:0, {0.1,0.2}>>) -> tensor<2xf32>
  func.return %a, %b, %c, %d, %e : tensor<2x!quant.uniform<u8:f32, 0.02:128>>, tensor<2x!quant.uniform<i8<-127:127>:f32, 0.02>>, tensor<2x!quant.uniform<i16:f32, 0.02>>, tensor<2x!quant.uniform<i8:f32, 0.04>>, tensor<2xf32>
}
