// RUN: qcc-opt %s | qcc-opt | filecheck %s

// Round trip of !quant.uniform in every form and of every quant op.
// Scales print as the shortest text that parses back to the same float64.

// ----------------------------------------------------------------- types

// CHECK-LABEL: func.func @per_tensor_i8
// CHECK-SAME: tensor<4x!quant.uniform<i8:f32, 0.0125:-3>>
func.func @per_tensor_i8(%a: tensor<4x!quant.uniform<i8:f32, 0.0125:-3>>) {
  func.return
}

// MLIR's own spelling of the scale parses to the same value.
// CHECK-LABEL: func.func @mlir_scale_spelling
// CHECK-SAME: tensor<4x!quant.uniform<i8:f32, 0.0125:-3>>
func.func @mlir_scale_spelling(%a: tensor<4x!quant.uniform<i8:f32, 1.250000e-02:-3>>) {
  func.return
}

// A zero point of 0 is omitted, written or not; an integer scale becomes a float.
// CHECK-LABEL: func.func @zero_point_omitted
// CHECK-SAME: tensor<2x!quant.uniform<u8:f32, 0.5>>
// CHECK-SAME: tensor<2x!quant.uniform<u8:f32, 2.0>>
func.func @zero_point_omitted(%a: tensor<2x!quant.uniform<u8:f32, 0.5:0>>,
                              %b: tensor<2x!quant.uniform<u8:f32, 2>>) {
  func.return
}

// CHECK-LABEL: func.func @storage_types
// CHECK-SAME: !quant.uniform<i4:f32, 0.25:-1>
// CHECK-SAME: !quant.uniform<u4:f32, 0.25:7>
// CHECK-SAME: !quant.uniform<u8:f32, 0.1:128>
// CHECK-SAME: !quant.uniform<i16:f32, 0.001:-300>
// CHECK-SAME: !quant.uniform<i32:f32, 1.0e-06>
func.func @storage_types(%a: tensor<1x!quant.uniform<i4:f32, 0.25:-1>>,
                         %b: tensor<1x!quant.uniform<u4:f32, 0.25:7>>,
                         %c: tensor<1x!quant.uniform<u8:f32, 0.1:128>>,
                         %d: tensor<1x!quant.uniform<i16:f32, 0.001:-300>>,
                         %e: tensor<1x!quant.uniform<i32:f32, 1.0e-06>>) {
  func.return
}

// CHECK-LABEL: func.func @narrow_range
// CHECK-SAME: !quant.uniform<i8<-127:127>:f32, 0.5:1>
// CHECK-SAME: !quant.uniform<u8<1:255>:f32, 0.5:128>
// CHECK-SAME: !quant.uniform<i8<-64:63>:f32, 0.5>
func.func @narrow_range(%a: tensor<2x!quant.uniform<i8<-127:127>:f32, 0.5:1>>,
                        %b: tensor<2x!quant.uniform<u8<1:255>:f32, 0.5:128>>,
                        %c: tensor<2x!quant.uniform<i8<-64:63>:f32, 0.5>>) {
  func.return
}

// A storage range equal to the full range of the storage type is not printed.
// CHECK-LABEL: func.func @full_range
// CHECK-SAME: !quant.uniform<i8:f32, 0.5>
// CHECK-NOT: <-128:127>
func.func @full_range(%a: tensor<2x!quant.uniform<i8<-128:127>:f32, 0.5>>) {
  func.return
}

// CHECK-LABEL: func.func @expressed_types
// CHECK-SAME: !quant.uniform<i8:f16, 0.5>
// CHECK-SAME: !quant.uniform<i8:bf16, 0.5:2>
func.func @expressed_types(%a: tensor<2x!quant.uniform<i8:f16, 0.5>>,
                           %b: tensor<2x!quant.uniform<i8:bf16, 0.5:2>>) {
  func.return
}

// Scales that need all 17 digits or an exponent survive exactly.
// CHECK-LABEL: func.func @exact_scales
// CHECK-SAME: !quant.uniform<i8:f32, 0.30000000000000004>
// CHECK-SAME: !quant.uniform<i8:f32, 1.0e-05>
// CHECK-SAME: !quant.uniform<i8:f32, 3.0e+38>
func.func @exact_scales(%a: tensor<1x!quant.uniform<i8:f32, 0.30000000000000004>>,
                        %b: tensor<1x!quant.uniform<i8:f32, 10.0e-06>>,
                        %c: tensor<1x!quant.uniform<i8:f32, 3.0e+38>>) {
  func.return
}

// CHECK-LABEL: func.func @per_axis
// CHECK-SAME: !quant.uniform<i8:f32:0, {0.1,0.2}>
// CHECK-SAME: !quant.uniform<u8:f32:1, {0.5:128,0.25:3,1.0}>
// CHECK-SAME: !quant.uniform<i8<-127:127>:f32:0, {0.1:-127,0.2:127}>
func.func @per_axis(%a: tensor<2x3x!quant.uniform<i8:f32:0, {0.1:0,0.2:0}>>,
                    %b: tensor<2x3x!quant.uniform<u8:f32:1, {0.5:128, 0.25:3, 1.0}>>,
                    %c: tensor<2x!quant.uniform<i8<-127:127>:f32:0, {0.1:-127,0.2:127}>>) {
  func.return
}

// ------------------------------------------------------------------- ops

// CHECK-LABEL: func.func @quantize
// CHECK-SAME: (%[[X:.*]]: tensor<4xf32>)
// CHECK: %[[Q:.*]] = quant.quantize %[[X]] {qtype = !quant.uniform<i8:f32, 0.1>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.1>>
// CHECK: func.return %[[Q]]
func.func @quantize(%x: tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.1>> {
  %q = quant.quantize %x {qtype = !quant.uniform<i8:f32, 0.1>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.1>>
  func.return %q : tensor<4x!quant.uniform<i8:f32, 0.1>>
}

// CHECK-LABEL: func.func @quantize_per_axis
// CHECK: quant.quantize %{{.*}} {qtype = !quant.uniform<i8<-127:127>:f32:0, {0.1,0.2,0.3}>} : (tensor<3x8xf32>) -> tensor<3x8x!quant.uniform<i8<-127:127>:f32:0, {0.1,0.2,0.3}>>
func.func @quantize_per_axis(%w: tensor<3x8xf32>) -> tensor<3x8x!quant.uniform<i8<-127:127>:f32:0, {0.1,0.2,0.3}>> {
  %q = quant.quantize %w {qtype = !quant.uniform<i8<-127:127>:f32:0, {0.1,0.2,0.3}>} : (tensor<3x8xf32>) -> tensor<3x8x!quant.uniform<i8<-127:127>:f32:0, {0.1,0.2,0.3}>>
  func.return %q : tensor<3x8x!quant.uniform<i8<-127:127>:f32:0, {0.1,0.2,0.3}>>
}

// CHECK-LABEL: func.func @dequantize
// CHECK-SAME: (%[[Q:.*]]: tensor<1x4x!quant.uniform<u8:f32, 0.05:128>>)
// CHECK: %[[X:.*]] = quant.dequantize %[[Q]] : (tensor<1x4x!quant.uniform<u8:f32, 0.05:128>>) -> tensor<1x4xf32>
// CHECK: func.return %[[X]]
func.func @dequantize(%q: tensor<1x4x!quant.uniform<u8:f32, 0.05:128>>) -> tensor<1x4xf32> {
  %x = quant.dequantize %q : (tensor<1x4x!quant.uniform<u8:f32, 0.05:128>>) -> tensor<1x4xf32>
  func.return %x : tensor<1x4xf32>
}

// CHECK-LABEL: func.func @dequantize_f16
// CHECK: quant.dequantize %{{.*}} : (tensor<2x!quant.uniform<i8:f16, 0.5>>) -> tensor<2xf16>
func.func @dequantize_f16(%q: tensor<2x!quant.uniform<i8:f16, 0.5>>) -> tensor<2xf16> {
  %x = quant.dequantize %q : (tensor<2x!quant.uniform<i8:f16, 0.5>>) -> tensor<2xf16>
  func.return %x : tensor<2xf16>
}

// CHECK-LABEL: func.func @dequantize_per_axis
// CHECK: quant.dequantize %{{.*}} : (tensor<2x2x!quant.uniform<i8:f32:1, {0.5,0.25:1}>>) -> tensor<2x2xf32>
func.func @dequantize_per_axis(%q: tensor<2x2x!quant.uniform<i8:f32:1, {0.5,0.25:1}>>) -> tensor<2x2xf32> {
  %x = quant.dequantize %q : (tensor<2x2x!quant.uniform<i8:f32:1, {0.5,0.25:1}>>) -> tensor<2x2xf32>
  func.return %x : tensor<2x2xf32>
}

// CHECK-LABEL: func.func @requantize
// CHECK-SAME: (%[[A:.*]]: tensor<4x!quant.uniform<i32:f32, 0.001>>)
// CHECK: %[[B:.*]] = quant.requantize %[[A]] {qtype = !quant.uniform<i8:f32, 0.1:-3>} : (tensor<4x!quant.uniform<i32:f32, 0.001>>) -> tensor<4x!quant.uniform<i8:f32, 0.1:-3>>
// CHECK: func.return %[[B]]
func.func @requantize(%a: tensor<4x!quant.uniform<i32:f32, 0.001>>) -> tensor<4x!quant.uniform<i8:f32, 0.1:-3>> {
  %b = quant.requantize %a {qtype = !quant.uniform<i8:f32, 0.1:-3>} : (tensor<4x!quant.uniform<i32:f32, 0.001>>) -> tensor<4x!quant.uniform<i8:f32, 0.1:-3>>
  func.return %b : tensor<4x!quant.uniform<i8:f32, 0.1:-3>>
}

// CHECK-LABEL: func.func @requantize_per_axis_to_per_tensor
// CHECK: quant.requantize %{{.*}} {qtype = !quant.uniform<u8:f32, 0.2:10>} : (tensor<2x3x!quant.uniform<i32:f32:0, {0.001,0.002}>>) -> tensor<2x3x!quant.uniform<u8:f32, 0.2:10>>
func.func @requantize_per_axis_to_per_tensor(%a: tensor<2x3x!quant.uniform<i32:f32:0, {0.001,0.002}>>) -> tensor<2x3x!quant.uniform<u8:f32, 0.2:10>> {
  %b = quant.requantize %a {qtype = !quant.uniform<u8:f32, 0.2:10>} : (tensor<2x3x!quant.uniform<i32:f32:0, {0.001,0.002}>>) -> tensor<2x3x!quant.uniform<u8:f32, 0.2:10>>
  func.return %b : tensor<2x3x!quant.uniform<u8:f32, 0.2:10>>
}

// CHECK-LABEL: func.func @quantize_requantize_dequantize
// CHECK: %[[Q:.*]] = quant.quantize
// CHECK: %[[R:.*]] = quant.requantize %[[Q]]
// CHECK: %[[D:.*]] = quant.dequantize %[[R]]
// CHECK: func.return %[[D]]
func.func @quantize_requantize_dequantize(%x: tensor<4xf32>) -> tensor<4xf32> {
  %q = quant.quantize %x {qtype = !quant.uniform<i16:f32, 0.001>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i16:f32, 0.001>>
  %r = quant.requantize %q {qtype = !quant.uniform<i4:f32, 0.5:1>} : (tensor<4x!quant.uniform<i16:f32, 0.001>>) -> tensor<4x!quant.uniform<i4:f32, 0.5:1>>
  %d = quant.dequantize %r : (tensor<4x!quant.uniform<i4:f32, 0.5:1>>) -> tensor<4xf32>
  func.return %d : tensor<4xf32>
}

// CHECK-LABEL: func.func @observe_activation
// CHECK-SAME: (%[[X:.*]]: tensor<1x3x8x8xf32>)
// CHECK: %[[O:.*]] = quant.observe %[[X]] {kind = "activation", algorithm = "minmax", bits = 8 : i64, symmetric = false, axis = -1 : i64, narrow_range = false, id = "conv1.input"} : (tensor<1x3x8x8xf32>) -> tensor<1x3x8x8xf32>
// CHECK: func.return %[[O]]
func.func @observe_activation(%x: tensor<1x3x8x8xf32>) -> tensor<1x3x8x8xf32> {
  %o = quant.observe %x {kind = "activation", algorithm = "minmax", bits = 8, symmetric = false, axis = -1, narrow_range = false, id = "conv1.input"} : (tensor<1x3x8x8xf32>) -> tensor<1x3x8x8xf32>
  func.return %o : tensor<1x3x8x8xf32>
}

// CHECK-LABEL: func.func @observe_weight_per_channel
// CHECK: quant.observe %{{.*}} {kind = "weight", algorithm = "arq", bits = 4 : i64, symmetric = true, axis = 0 : i64, narrow_range = true, id = "conv1.weight"} : (tensor<16x3x3x3xf32>) -> tensor<16x3x3x3xf32>
func.func @observe_weight_per_channel(%w: tensor<16x3x3x3xf32>) -> tensor<16x3x3x3xf32> {
  %o = quant.observe %w {kind = "weight", algorithm = "arq", bits = 4, symmetric = true, axis = 0, narrow_range = true, id = "conv1.weight"} : (tensor<16x3x3x3xf32>) -> tensor<16x3x3x3xf32>
  func.return %o : tensor<16x3x3x3xf32>
}

// CHECK-LABEL: func.func @fake_quant
// CHECK-SAME: (%[[X:.*]]: tensor<2x4xf32>)
// CHECK: %[[F:.*]] = quant.fake_quant %[[X]] {qtype = !quant.uniform<u8:f32, 0.0125:3>} : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK: func.return %[[F]]
func.func @fake_quant(%x: tensor<2x4xf32>) -> tensor<2x4xf32> {
  %f = quant.fake_quant %x {qtype = !quant.uniform<u8:f32, 0.0125:3>} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  func.return %f : tensor<2x4xf32>
}

// CHECK-LABEL: func.func @fake_quant_per_axis
// CHECK: quant.fake_quant %{{.*}} {qtype = !quant.uniform<i8<-127:127>:f32:1, {0.1,0.2,0.4}>} : (tensor<2x3xf32>) -> tensor<2x3xf32>
func.func @fake_quant_per_axis(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %f = quant.fake_quant %x {qtype = !quant.uniform<i8<-127:127>:f32:1, {0.1,0.2,0.4}>} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return %f : tensor<2x3xf32>
}

// Range learning: scale and zero point are operands.
// CHECK-LABEL: func.func @fake_quant_learned
// CHECK-SAME: (%[[X:.*]]: tensor<4xf32>, %[[S:.*]]: tensor<f32>, %[[Z:.*]]: tensor<f32>)
// CHECK: quant.fake_quant %[[X]], %[[S]], %[[Z]] {qtype = !quant.uniform<i8:f32, 0.1>} : (tensor<4xf32>, tensor<f32>, tensor<f32>) -> tensor<4xf32>
func.func @fake_quant_learned(%x: tensor<4xf32>, %s: tensor<f32>, %z: tensor<f32>) -> tensor<4xf32> {
  %f = quant.fake_quant %x, %s, %z {qtype = !quant.uniform<i8:f32, 0.1>} : (tensor<4xf32>, tensor<f32>, tensor<f32>) -> tensor<4xf32>
  func.return %f : tensor<4xf32>
}

// CHECK-LABEL: func.func @fake_quant_learned_per_axis
// CHECK: quant.fake_quant %{{.*}}, %{{.*}}, %{{.*}} {qtype = !quant.uniform<u8:f32:0, {0.1,0.2}>} : (tensor<2x5xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<2x5xf32>
func.func @fake_quant_learned_per_axis(%x: tensor<2x5xf32>, %s: tensor<2xf32>, %z: tensor<2xf32>) -> tensor<2x5xf32> {
  %f = quant.fake_quant %x, %s, %z {qtype = !quant.uniform<u8:f32:0, {0.1,0.2}>} : (tensor<2x5xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<2x5xf32>
  func.return %f : tensor<2x5xf32>
}
