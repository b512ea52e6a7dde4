// RUN: qcc-opt %s --split-input-file --verify-diagnostics | filecheck %s

// One case per verifier rule of the ascend ops.

func.func @quant_scale(%x: tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.02:-3>> {
  %q = ascend.quant %x {scale = 40.0 : f32, offset = -3.0 : f32, sqrt_mode = false, round_mode = "Round", qtype = !quant.uniform<i8:f32, 0.02:-3>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.02:-3>>
  func.return %q : tensor<4x!quant.uniform<i8:f32, 0.02:-3>>
}
// CHECK: 'ascend.quant': scale 40.0 does not match 1 / scale 50.0 of the type

// -----

func.func @quant_offset(%x: tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.02:-3>> {
  %q = ascend.quant %x {scale = 50.0 : f32, offset = 3.0 : f32, sqrt_mode = false, round_mode = "Round", qtype = !quant.uniform<i8:f32, 0.02:-3>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.02:-3>>
  func.return %q : tensor<4x!quant.uniform<i8:f32, 0.02:-3>>
}
// CHECK: 'ascend.quant': offset 3.0 must be the zero point -3 of qtype

// -----

func.func @quant_fp16_overflow(%x: tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 1.0e-06>> {
  %q = ascend.quant %x {scale = 1000000.0 : f32, offset = 0.0 : f32, sqrt_mode = false, round_mode = "Round", qtype = !quant.uniform<i8:f32, 1.0e-06>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 1.0e-06>>
  func.return %q : tensor<4x!quant.uniform<i8:f32, 1.0e-06>>
}
// CHECK: 'ascend.quant': scale 1000000.0 overflows float16 (max 65504.0): store its square root with sqrt_mode = true

// -----

func.func @quant_round_mode(%x: tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.02:-3>> {
  %q = ascend.quant %x {scale = 50.0 : f32, offset = -3.0 : f32, sqrt_mode = false, round_mode = "Nearest", qtype = !quant.uniform<i8:f32, 0.02:-3>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.02:-3>>
  func.return %q : tensor<4x!quant.uniform<i8:f32, 0.02:-3>>
}
// CHECK: 'ascend.quant': round_mode must be one of Round, Rint, Floor, Ceil, Trunc, got 'Nearest'

// -----

func.func @quant_narrow(%x: tensor<4xf32>) -> tensor<4x!quant.uniform<i8<-127:127>:f32, 0.02>> {
  %q = ascend.quant %x {scale = 50.0 : f32, offset = 0.0 : f32, sqrt_mode = false, round_mode = "Round", qtype = !quant.uniform<i8<-127:127>:f32, 0.02>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8<-127:127>:f32, 0.02>>
  func.return %q : tensor<4x!quant.uniform<i8<-127:127>:f32, 0.02>>
}
// CHECK: 'ascend.quant': AscendQuant saturates to [-128, 127]: qtype must have the full i8 storage range (or [zero point, 127] after a relu), got [-127, 127]

// -----

func.func @dequant_count(%acc: tensor<1x3xi32>) -> tensor<1x3xf16> {
  %d = qnn.constant dense<[981668463, 990057071]> : tensor<2xui64>
  %y = ascend.dequant %acc, %d {relu_flag = false, sqrt_mode = false, axis = 1 : i64, dtype = f16} : (tensor<1x3xi32>, tensor<2xui64>) -> tensor<1x3xf16>
  func.return %y : tensor<1x3xf16>
}
// CHECK: 'ascend.dequant': deq_scale has 2 values: expected 1 or 3 (the size of axis 1)

// -----

func.func @dequant_sqrt_uint64(%acc: tensor<1x2xi32>) -> tensor<1x2xf16> {
  %d = qnn.constant dense<[981668463, 990057071]> : tensor<2xui64>
  %y = ascend.dequant %acc, %d {relu_flag = false, sqrt_mode = true, axis = 1 : i64, dtype = f16} : (tensor<1x2xi32>, tensor<2xui64>) -> tensor<1x2xf16>
  func.return %y : tensor<1x2xf16>
}
// CHECK: 'ascend.dequant': sqrt_mode needs a float16 deq_scale: with a uint64 deq_scale CANN supports only sqrt_mode = false

// -----

func.func @dequant_scales(%acc: tensor<1x2x!quant.uniform<i32:f32:1, {0.001,0.002}>>) -> tensor<1x2xf16> {
  %d = qnn.constant dense<[990057071, 981668463]> : tensor<2xui64>
  %y = ascend.dequant %acc, %d {relu_flag = false, sqrt_mode = false, axis = 1 : i64, dtype = f16} : (tensor<1x2x!quant.uniform<i32:f32:1, {0.001,0.002}>>, tensor<2xui64>) -> tensor<1x2xf16>
  func.return %y : tensor<1x2xf16>
}
// CHECK: 'ascend.dequant': deq_scale holds the scales [0.0020000000949949026, 0.0010000000474974513], but the input type has [0.0010000000474974513, 0.0020000000949949026] (in float32)

// -----

func.func @dequant_input(%acc: tensor<1x2xi8>) -> tensor<1x2xf16> {
  %d = qnn.constant dense<981668463> : tensor<1xui64>
  %y = ascend.dequant %acc, %d {relu_flag = false, sqrt_mode = false, axis = 1 : i64, dtype = f16} : (tensor<1x2xi8>, tensor<1xui64>) -> tensor<1x2xf16>
  func.return %y : tensor<1x2xf16>
}
// CHECK: 'ascend.dequant': the input must be a tensor of i32 (or a quantized i32 type), got tensor<1x2xi8>

// -----

func.func @anti_quant_offset(%q: tensor<4x!quant.uniform<i8:f32, 0.02:-3>>) -> tensor<4xf32> {
  %y = ascend.anti_quant %q {scale = 0.02 : f32, offset = -3.0 : f32, sqrt_mode = false, dtype = f32} : (tensor<4x!quant.uniform<i8:f32, 0.02:-3>>) -> tensor<4xf32>
  func.return %y : tensor<4xf32>
}
// CHECK: 'ascend.anti_quant': offset -3.0 must be the negated zero point 3 of the input type

// -----

func.func @weight_quant_axis() -> tensor<3x2x!quant.uniform<i8:f32:0, {0.1,0.2}>> {
  %w = qnn.constant dense<0.5> : tensor<3x2xf32>
  %q = ascend.weight_quant %w {qtype = !quant.uniform<i8:f32:0, {0.1,0.2}>} : (tensor<3x2xf32>) -> tensor<3x2x!quant.uniform<i8:f32:0, {0.1,0.2}>>
  func.return %q : tensor<3x2x!quant.uniform<i8:f32:0, {0.1,0.2}>>
}
// CHECK: 'ascend.weight_quant': qtype has 2 per-axis scales on axis 0, the weight has shape (3, 2)
