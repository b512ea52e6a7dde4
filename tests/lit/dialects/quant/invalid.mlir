// RUN: qcc-opt %s --split-input-file --verify-diagnostics | filecheck %s

// One case per verifier rule of !quant.uniform and of the quant ops.

// Rules of the type (checked when it is parsed or built).

func.func @scale_zero(%a: tensor<2x!quant.uniform<i8:f32, 0.0:1>>) {
  func.return
}
// CHECK: !quant.uniform: scale 0.0 must be positive and finite

// -----

func.func @scale_negative(%a: tensor<2x!quant.uniform<i8:f32, -0.5>>) {
  func.return
}
// CHECK: !quant.uniform: scale -0.5 must be positive and finite

// -----

func.func @scale_infinite(%a: tensor<2x!quant.uniform<i8:f32, 1.0e+400>>) {
  func.return
}
// CHECK: !quant.uniform: scale inf must be positive and finite

// -----

func.func @per_axis_scale_zero(%a: tensor<2x!quant.uniform<i8:f32:0, {0.5,0.0}>>) {
  func.return
}
// CHECK: !quant.uniform: scale 0.0 must be positive and finite

// -----

func.func @zero_point_above_range(%a: tensor<2x!quant.uniform<i8:f32, 0.5:128>>) {
  func.return
}
// CHECK: !quant.uniform: zero point 128 is outside the storage range [-128, 127]

// -----

func.func @zero_point_unsigned(%a: tensor<2x!quant.uniform<u8:f32, 0.5:-1>>) {
  func.return
}
// CHECK: !quant.uniform: zero point -1 is outside the storage range [0, 255]

// -----

func.func @zero_point_narrow(%a: tensor<2x!quant.uniform<i8<-127:127>:f32, 0.5:-128>>) {
  func.return
}
// CHECK: !quant.uniform: zero point -128 is outside the storage range [-127, 127]

// -----

func.func @per_axis_zero_point(%a: tensor<2x!quant.uniform<i4:f32:0, {0.5:7,0.5:8}>>) {
  func.return
}
// CHECK: !quant.uniform: zero point 8 is outside the storage range [-8, 7]

// -----

func.func @storage_min_above_max(%a: tensor<2x!quant.uniform<i8<10:-10>:f32, 0.5>>) {
  func.return
}
// CHECK: !quant.uniform: storage range [10, -10] must be ordered and inside [-128, 127] of i8

// -----

func.func @storage_range_too_wide(%a: tensor<2x!quant.uniform<u8<0:256>:f32, 0.5>>) {
  func.return
}
// CHECK: !quant.uniform: storage range [0, 256] must be ordered and inside [0, 255] of u8

// -----

func.func @storage_bits(%a: tensor<2x!quant.uniform<i7:f32, 0.5>>) {
  func.return
}
// CHECK: !quant.uniform: storage type must have 4, 8, 16 or 32 bits, got 7

// -----

func.func @expressed_f64(%a: tensor<2x!quant.uniform<i8:f64, 0.5>>) {
  func.return
}
// CHECK: !quant.uniform: expressed type must be f32, f16 or bf16, got f64

// -----

// Rules of the ops.

func.func @quantize_axis_out_of_rank(%x: tensor<4xf32>) {
  %q = quant.quantize %x {qtype = !quant.uniform<i8:f32:1, {0.5,0.5}>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32:1, {0.5,0.5}>>
  func.return
}
// CHECK: 'quant.quantize': quantized axis 1 of the input is out of range for rank 1

// -----

func.func @quantize_per_axis_length(%x: tensor<3x4xf32>) {
  %q = quant.quantize %x {qtype = !quant.uniform<i8:f32:0, {0.5,0.5}>} : (tensor<3x4xf32>) -> tensor<3x4x!quant.uniform<i8:f32:0, {0.5,0.5}>>
  func.return
}
// CHECK: 'quant.quantize': the input has 2 per-axis scales but dimension 0 has size 3

// -----

func.func @quantize_expressed_mismatch(%x: tensor<4xf16>) {
  %q = quant.quantize %x {qtype = !quant.uniform<i8:f32, 0.5>} : (tensor<4xf16>) -> tensor<4x!quant.uniform<i8:f32, 0.5>>
  func.return
}
// CHECK: 'quant.quantize': the input element type f16 differs from the expressed type f32 of qtype

// -----

func.func @quantize_integer_input(%x: tensor<4xi32>) {
  %q = quant.quantize %x {qtype = !quant.uniform<i8:f32, 0.5>} : (tensor<4xi32>) -> tensor<4x!quant.uniform<i8:f32, 0.5>>
  func.return
}
// CHECK: 'quant.quantize': the input must be a tensor of f32, f16 or bf16, got tensor<4xi32>

// -----

func.func @quantize_result_type(%x: tensor<4xf32>) {
  %q = quant.quantize %x {qtype = !quant.uniform<i8:f32, 0.5>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.25>>
  func.return
}
// CHECK: 'quant.quantize': result type tensor<4x!quant.uniform<i8:f32, 0.25>> does not match the inferred type tensor<4x!quant.uniform<i8:f32, 0.5>>

// -----

func.func @dequantize_float_input(%x: tensor<4xf32>) {
  %d = quant.dequantize %x : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}
// CHECK: 'quant.dequantize': the input must be a tensor of !quant.uniform, got tensor<4xf32>

// -----

func.func @dequantize_result_type(%q: tensor<4x!quant.uniform<i8:f32, 0.5>>) {
  %d = quant.dequantize %q : (tensor<4x!quant.uniform<i8:f32, 0.5>>) -> tensor<4xf16>
  func.return
}
// CHECK: 'quant.dequantize': result type tensor<4xf16> does not match the inferred type tensor<4xf32>

// -----

func.func @dequantize_per_axis_length(%q: tensor<3x!quant.uniform<i8:f32:0, {0.5,0.5}>>) {
  %d = quant.dequantize %q : (tensor<3x!quant.uniform<i8:f32:0, {0.5,0.5}>>) -> tensor<3xf32>
  func.return
}
// CHECK: 'quant.dequantize': the input has 2 per-axis scales but dimension 0 has size 3

// -----

func.func @requantize_expressed_mismatch(%q: tensor<4x!quant.uniform<i32:f32, 0.001>>) {
  %r = quant.requantize %q {qtype = !quant.uniform<i8:f16, 0.5>} : (tensor<4x!quant.uniform<i32:f32, 0.001>>) -> tensor<4x!quant.uniform<i8:f16, 0.5>>
  func.return
}
// CHECK: 'quant.requantize': expressed types differ: f32 of the input and f16 of qtype

// -----

func.func @requantize_result_axis(%q: tensor<2x!quant.uniform<i32:f32, 0.001>>) {
  %r = quant.requantize %q {qtype = !quant.uniform<i8:f32:0, {0.5,0.5,0.5}>} : (tensor<2x!quant.uniform<i32:f32, 0.001>>) -> tensor<2x!quant.uniform<i8:f32:0, {0.5,0.5,0.5}>>
  func.return
}
// CHECK: 'quant.requantize': the result has 3 per-axis scales but dimension 0 has size 2

// -----

func.func @requantize_float_input(%x: tensor<4xf32>) {
  %r = quant.requantize %x {qtype = !quant.uniform<i8:f32, 0.5>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.5>>
  func.return
}
// CHECK: 'quant.requantize': the input must be a tensor of !quant.uniform, got tensor<4xf32>

// -----

func.func @fake_quant_per_axis_length(%x: tensor<2x3xf32>) {
  %f = quant.fake_quant %x {qtype = !quant.uniform<i8:f32:1, {0.5,0.5}>} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return
}
// CHECK: 'quant.fake_quant': the input has 2 per-axis scales but dimension 1 has size 3

// -----

func.func @fake_quant_expressed_mismatch(%x: tensor<4xbf16>) {
  %f = quant.fake_quant %x {qtype = !quant.uniform<i8:f32, 0.5>} : (tensor<4xbf16>) -> tensor<4xbf16>
  func.return
}
// CHECK: 'quant.fake_quant': the input element type bf16 differs from the expressed type f32 of qtype

// -----

func.func @fake_quant_one_learned_operand(%x: tensor<4xf32>, %s: tensor<f32>) {
  %f = quant.fake_quant %x, %s {qtype = !quant.uniform<i8:f32, 0.5>} : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  func.return
}
// CHECK: 'quant.fake_quant': takes either no or both of the scale and zero_point operands

// -----

func.func @fake_quant_learned_shape(%x: tensor<2x4xf32>, %s: tensor<4xf32>, %z: tensor<2xf32>) {
  %f = quant.fake_quant %x, %s, %z {qtype = !quant.uniform<i8:f32:0, {0.5,0.5}>} : (tensor<2x4xf32>, tensor<4xf32>, tensor<2xf32>) -> tensor<2x4xf32>
  func.return
}
// CHECK: 'quant.fake_quant': the scale operand must be tensor<2xf32>, got tensor<4xf32>

// -----

func.func @fake_quant_result_type(%x: tensor<4xf32>) {
  %f = quant.fake_quant %x {qtype = !quant.uniform<i8:f32, 0.5>} : (tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.5>>
  func.return
}
// CHECK: 'quant.fake_quant': result type tensor<4x!quant.uniform<i8:f32, 0.5>> does not match the inferred type tensor<4xf32>

// -----

func.func @observe_kind(%x: tensor<4xf32>) {
  %o = quant.observe %x {kind = "bias", algorithm = "minmax", bits = 8, symmetric = false, axis = -1, narrow_range = false, id = "fc.bias"} : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}
// CHECK: 'quant.observe': kind must be one of activation, weight, got 'bias'

// -----

// Which algorithm names exist is the registry's (qcc.quant.algorithms) to say:
// qcc-calibrate rejects an unknown one; the verifier only wants a name.
func.func @observe_algorithm(%x: tensor<4xf32>) {
  %o = quant.observe %x {kind = "activation", algorithm = "", bits = 8, symmetric = false, axis = -1, narrow_range = false, id = "x"} : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}
// CHECK: 'quant.observe': algorithm must name a calibration algorithm (qcc.quant.algorithms)

// -----

func.func @observe_bits(%x: tensor<4xf32>) {
  %o = quant.observe %x {kind = "activation", algorithm = "minmax", bits = 1, symmetric = false, axis = -1, narrow_range = false, id = "x"} : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}
// CHECK: 'quant.observe': bits must be between 2 and 16, got 1

// -----

func.func @observe_axis(%w: tensor<8x3xf32>) {
  %o = quant.observe %w {kind = "weight", algorithm = "minmax", bits = 8, symmetric = true, axis = 2, narrow_range = true, id = "fc.weight"} : (tensor<8x3xf32>) -> tensor<8x3xf32>
  func.return
}
// CHECK: 'quant.observe': axis 2 is out of range for rank 2 (-1 means per-tensor)

// -----

func.func @observe_id(%x: tensor<4xf32>) {
  %o = quant.observe %x {kind = "activation", algorithm = "minmax", bits = 8, symmetric = false, axis = -1, narrow_range = false, id = ""} : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}
// CHECK: 'quant.observe': id must name the quantizer, e.g. "conv1.input"

// -----

func.func @observe_integer_input(%x: tensor<4xi8>) {
  %o = quant.observe %x {kind = "activation", algorithm = "minmax", bits = 8, symmetric = false, axis = -1, narrow_range = false, id = "x"} : (tensor<4xi8>) -> tensor<4xi8>
  func.return
}
// CHECK: 'quant.observe': the observed value must be a tensor of f32, f16 or bf16, got tensor<4xi8>
