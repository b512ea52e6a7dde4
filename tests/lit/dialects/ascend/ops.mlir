// RUN: qcc-opt %s | qcc-opt | filecheck %s

// Round trip of every ascend op.

// CHECK-LABEL: func.func @quant
// CHECK: %[[Q:.*]] = ascend.quant %x {scale = 5.000000e+01 : f32, offset = -3.000000e+00 : f32, sqrt_mode = false, round_mode = "Round", qtype = !quant.uniform<i8:f32, 0.02:-3>} : (tensor<1x4xf32>) -> tensor<1x4x!quant.uniform<i8:f32, 0.02:-3>>
// CHECK: ascend.quant %x {scale = 1.000000e+03 : f32, offset = 0.000000e+00 : f32, sqrt_mode = true, round_mode = "Rint", qtype = !quant.uniform<i8:f32, 1.0e-06>}
// CHECK: ascend.anti_quant %[[Q]] {scale = 2.000000e-02 : f32, offset = 3.000000e+00 : f32, sqrt_mode = false, dtype = f16} : (tensor<1x4x!quant.uniform<i8:f32, 0.02:-3>>) -> tensor<1x4xf16>
func.func @quant(%x: tensor<1x4xf32>) -> (tensor<1x4x!quant.uniform<i8:f32, 0.02:-3>>, tensor<1x4x!quant.uniform<i8:f32, 1.0e-06>>, tensor<1x4xf16>) {
  %q = ascend.quant %x {scale = 50.0 : f32, offset = -3.0 : f32, sqrt_mode = false, round_mode = "Round", qtype = !quant.uniform<i8:f32, 0.02:-3>} : (tensor<1x4xf32>) -> tensor<1x4x!quant.uniform<i8:f32, 0.02:-3>>
  %s = ascend.quant %x {scale = 1000.0 : f32, offset = 0.0 : f32, sqrt_mode = true, round_mode = "Rint", qtype = !quant.uniform<i8:f32, 1.0e-06>} : (tensor<1x4xf32>) -> tensor<1x4x!quant.uniform<i8:f32, 1.0e-06>>
  %a = ascend.anti_quant %q {scale = 0.02 : f32, offset = 3.0 : f32, sqrt_mode = false, dtype = f16} : (tensor<1x4x!quant.uniform<i8:f32, 0.02:-3>>) -> tensor<1x4xf16>
  func.return %q, %s, %a : tensor<1x4x!quant.uniform<i8:f32, 0.02:-3>>, tensor<1x4x!quant.uniform<i8:f32, 1.0e-06>>, tensor<1x4xf16>
}

// deq_scale: the float32 bits of 0.001 and 0.002 (0x3A83126F, 0x3B03126F).
// CHECK-LABEL: func.func @dequant
// CHECK: %[[D:.*]] = qnn.constant dense<[981668463, 990057071]> : tensor<2xui64>
// CHECK: ascend.dequant %acc, %[[D]] {relu_flag = true, sqrt_mode = false, axis = 1 : i64, dtype = f16} : (tensor<1x2x!quant.uniform<i32:f32:1, {0.001,0.002}>>, tensor<2xui64>) -> tensor<1x2xf16>
// CHECK: ascend.dequant %raw, %{{.*}} {relu_flag = false, sqrt_mode = false, axis = 1 : i64, dtype = f32} : (tensor<1x2xi32>, tensor<1xui64>) -> tensor<1x2xf32>
func.func @dequant(%acc: tensor<1x2x!quant.uniform<i32:f32:1, {0.001,0.002}>>, %raw: tensor<1x2xi32>) -> (tensor<1x2xf16>, tensor<1x2xf32>) {
  %d = qnn.constant dense<[981668463, 990057071]> : tensor<2xui64>
  %y = ascend.dequant %acc, %d {relu_flag = true, sqrt_mode = false, axis = 1 : i64, dtype = f16} : (tensor<1x2x!quant.uniform<i32:f32:1, {0.001,0.002}>>, tensor<2xui64>) -> tensor<1x2xf16>
  %one = qnn.constant dense<1056964608> : tensor<1xui64>
  %z = ascend.dequant %raw, %one {relu_flag = false, sqrt_mode = false, axis = 1 : i64, dtype = f32} : (tensor<1x2xi32>, tensor<1xui64>) -> tensor<1x2xf32>
  func.return %y, %z : tensor<1x2xf16>, tensor<1x2xf32>
}

// CHECK-LABEL: func.func @weight_quant
// CHECK: ascend.weight_quant %w {qtype = !quant.uniform<i8<-127:127>:f32:0, {0.1,0.2}>} : (tensor<2x3xf32>) -> tensor<2x3x!quant.uniform<i8<-127:127>:f32:0, {0.1,0.2}>>
func.func @weight_quant() -> tensor<2x3x!quant.uniform<i8<-127:127>:f32:0, {0.1,0.2}>> {
  %w = qnn.constant dense<[[0.1, 0.2, -0.3], [0.4, 0.5, 0.6]]> : tensor<2x3xf32>
  %q = ascend.weight_quant %w {qtype = !quant.uniform<i8<-127:127>:f32:0, {0.1,0.2}>} : (tensor<2x3xf32>) -> tensor<2x3x!quant.uniform<i8<-127:127>:f32:0, {0.1,0.2}>>
  func.return %q : tensor<2x3x!quant.uniform<i8<-127:127>:f32:0, {0.1,0.2}>>
}
