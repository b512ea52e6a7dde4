// RUN: qcc-opt %s --split-input-file --verify-diagnostics | filecheck %s

// The optional properties round trip; IR without them stays valid.

// CHECK-LABEL: func.func @all_properties
// CHECK: qnn.resize %{{.*}} {sizes = array<i64: 1, 2, 2, 10>, mode = "cubic", coordinate_transformation_mode = "tf_crop_and_resize", nearest_mode = "round_prefer_floor", scales = array<f64: 1.000000e+00, 1.000000e+00, 0.60000002384185791, 2.000000e+00>, roi = array<f64: 0.000000e+00, 0.000000e+00, 1.000000e-01, 2.000000e-01, 1.000000e+00, 1.000000e+00, 9.000000e-01, 8.000000e-01>, cubic_coeff_a = -5.000000e-01 : f64, exclude_outside = true, extrapolation_value = 1.000000e+01 : f64, antialias = true} : (tensor<1x2x4x5xf32>) -> tensor<1x2x2x10xf32>
func.func @all_properties(%x: tensor<1x2x4x5xf32>) -> tensor<1x2x2x10xf32> {
  %0 = qnn.resize %x {sizes = array<i64: 1, 2, 2, 10>, mode = "cubic", coordinate_transformation_mode = "tf_crop_and_resize", nearest_mode = "round_prefer_floor", scales = array<f64: 1.0, 1.0, 0.6000000238418579, 2.0>, roi = array<f64: 0.0, 0.0, 0.1, 0.2, 1.0, 1.0, 0.9, 0.8>, cubic_coeff_a = -0.5 : f64, exclude_outside = true, extrapolation_value = 10.0 : f64, antialias = true} : (tensor<1x2x4x5xf32>) -> tensor<1x2x2x10xf32>
  func.return %0 : tensor<1x2x2x10xf32>
}

// -----

// CHECK-LABEL: func.func @defaults_only
// CHECK: qnn.resize %{{.*}} {sizes = array<i64: 1, 2, 8, 10>, mode = "linear", coordinate_transformation_mode = "half_pixel_symmetric", nearest_mode = "floor"} : (tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32>
// CHECK-NOT: scales
func.func @defaults_only(%x: tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32> {
  %0 = qnn.resize %x {sizes = array<i64: 1, 2, 8, 10>, mode = "linear", coordinate_transformation_mode = "half_pixel_symmetric", nearest_mode = "floor"} : (tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32>
  func.return %0 : tensor<1x2x8x10xf32>
}

// -----

// Any rank and any axis (here the channels of a 3-D tensor), any element type.

// CHECK-LABEL: func.func @rank3_channels_i8
// CHECK: qnn.resize {{.*}}scales = array<f64: 1.000000e+00, 1.500000e+00, 1.000000e+00>{{.*}} : (tensor<2x3x7xi8>) -> tensor<2x4x7xi8>
func.func @rank3_channels_i8(%x: tensor<2x3x7xi8>) -> tensor<2x4x7xi8> {
  %0 = qnn.resize %x {sizes = array<i64: 2, 4, 7>, mode = "nearest", coordinate_transformation_mode = "asymmetric", nearest_mode = "ceil", scales = array<f64: 1.0, 1.5, 1.0>} : (tensor<2x3x7xi8>) -> tensor<2x4x7xi8>
  func.return %0 : tensor<2x4x7xi8>
}

// -----

func.func @bad_mode(%x: tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32> {
  // CHECK: 'qnn.resize': mode 'bicubic' is not one of nearest, linear, cubic
  %0 = qnn.resize %x {sizes = array<i64: 1, 2, 8, 10>, mode = "bicubic", coordinate_transformation_mode = "half_pixel", nearest_mode = "floor"} : (tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32>
  func.return %0 : tensor<1x2x8x10xf32>
}

// -----

func.func @bad_coordinate_mode(%x: tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32> {
  // CHECK: 'qnn.resize': coordinate_transformation_mode 'tf_half_pixel_for_nn' is not one of half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric, tf_crop_and_resize
  %0 = qnn.resize %x {sizes = array<i64: 1, 2, 8, 10>, mode = "nearest", coordinate_transformation_mode = "tf_half_pixel_for_nn", nearest_mode = "floor"} : (tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32>
  func.return %0 : tensor<1x2x8x10xf32>
}

// -----

func.func @bad_nearest_mode(%x: tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32> {
  // CHECK: 'qnn.resize': nearest_mode 'round' is not one of round_prefer_floor, round_prefer_ceil, floor, ceil
  %0 = qnn.resize %x {sizes = array<i64: 1, 2, 8, 10>, mode = "nearest", coordinate_transformation_mode = "half_pixel", nearest_mode = "round"} : (tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32>
  func.return %0 : tensor<1x2x8x10xf32>
}

// -----

func.func @scales_length(%x: tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32> {
  // CHECK: 'qnn.resize': scales has 2 values, expected 4
  %0 = qnn.resize %x {sizes = array<i64: 1, 2, 8, 10>, mode = "nearest", coordinate_transformation_mode = "half_pixel", nearest_mode = "floor", scales = array<f64: 2.0, 2.0>} : (tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32>
  func.return %0 : tensor<1x2x8x10xf32>
}

// -----

func.func @scales_positive(%x: tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32> {
  // CHECK: 'qnn.resize': scales [1.0, 1.0, 0.0, 2.0] must be positive
  %0 = qnn.resize %x {sizes = array<i64: 1, 2, 8, 10>, mode = "nearest", coordinate_transformation_mode = "half_pixel", nearest_mode = "floor", scales = array<f64: 1.0, 1.0, 0.0, 2.0>} : (tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32>
  func.return %0 : tensor<1x2x8x10xf32>
}

// -----

func.func @roi_length(%x: tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32> {
  // CHECK: 'qnn.resize': roi has 4 values, expected 8
  %0 = qnn.resize %x {sizes = array<i64: 1, 2, 8, 10>, mode = "linear", coordinate_transformation_mode = "tf_crop_and_resize", nearest_mode = "floor", roi = array<f64: 0.0, 0.0, 1.0, 1.0>} : (tensor<1x2x4x5xf32>) -> tensor<1x2x8x10xf32>
  func.return %0 : tensor<1x2x8x10xf32>
}

// -----

func.func @sizes_rank(%x: tensor<1x2x4x5xf32>) -> tensor<1x2x8xf32> {
  // CHECK: 'qnn.resize': sizes [1, 2, 8] must be 4 non-negative sizes (or -1: the input's dim) for input shape (1, 2, 4, 5)
  %0 = qnn.resize %x {sizes = array<i64: 1, 2, 8>, mode = "nearest", coordinate_transformation_mode = "half_pixel", nearest_mode = "floor"} : (tensor<1x2x4x5xf32>) -> tensor<1x2x8xf32>
  func.return %0 : tensor<1x2x8xf32>
}

// -----

func.func @result_type(%x: tensor<1x2x4x5xf32>) -> tensor<1x2x8x8xf32> {
  // CHECK: 'qnn.resize': result type tensor<1x2x8x8xf32> does not match the inferred type tensor<1x2x8x10xf32>
  %0 = qnn.resize %x {sizes = array<i64: 1, 2, 8, 10>, mode = "nearest", coordinate_transformation_mode = "half_pixel", nearest_mode = "floor"} : (tensor<1x2x4x5xf32>) -> tensor<1x2x8x8xf32>
  func.return %0 : tensor<1x2x8x8xf32>
}
