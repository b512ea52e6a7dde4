// RUN: qcc-opt %s --split-input-file -p qcc-fuse-bn | filecheck %s
//
// The four AMCT fusions on Caffe inputs. Each case is the IR `qcc import` makes from
// the prototxt named above it (tests/frontends/caffe/test_caffe_fusions.py checks that
// the two agree and runs every case before and after the pass on the runtime).

// Convolution + BatchNorm + Scale (Caffe's in-place pair after a conv): one conv.
// CHECK-LABEL: func.func @conv_bn_scale
// CHECK:       %[[W:.*]] = qnn.constant {{.*}}name = "conv.weight_fused"
// CHECK:       %[[B:.*]] = qnn.constant {{.*}}name = "conv.bias_fused"
// CHECK:       %[[Y:.*]] = qnn.conv %x, %[[W]], %[[B]] {name = "conv"
// CHECK-NOT:   qnn.batch_norm
// CHECK-NOT:   qnn.scale
// CHECK:       func.return %[[Y]]

// Imported from Inputs/qcc-fuse-bn-caffe-conv.prototxt
builtin.module attributes {qcc.framework = "caffe"} {
  func.func @conv_bn_scale(%x: tensor<1x2x3x3xf32> {qnn.name = "x"}) -> (tensor<1x4x3x3xf32> {qnn.name = "y"}) {
    %0 = qnn.constant dense<[[[[1.300000e-01]], [[-1.300000e-01]]], [[[6.400000e-01]], [[1.000000e-01]]], [[[-5.400000e-01]], [[3.600000e-01]]], [[[1.300000e+00]], [[9.500000e-01]]]]> : tensor<4x2x1x1xf32> {name = "conv.weight"}
    %1 = qnn.constant dense<[-7.000000e-01, -1.270000e+00, -6.200000e-01, 4.000000e-02]> : tensor<4xf32> {name = "conv.bias"}
    %2 = qnn.conv %x, %0, %1 {name = "conv", source = "caffe.Convolution", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x3x3xf32>, tensor<4x2x1x1xf32>, tensor<4xf32>) -> tensor<1x4x3x3xf32>
    %3 = qnn.constant dense<1.000000e+00> : tensor<4xf32> {name = "conv/bn.scale"}
    %4 = qnn.constant dense<0.000000e+00> : tensor<4xf32> {name = "conv/bn.bias"}
    %5 = qnn.constant dense<[-2.330000e+00, -2.200000e-01, -1.250000e+00, -7.300000e-01]> : tensor<4xf32> {name = "conv/bn.mean"}
    %6 = qnn.constant dense<[1.790000e+00, 1.310000e+00, 9.500000e-01, 1.130000e+00]> : tensor<4xf32> {name = "conv/bn.var"}
    %7 = qnn.batch_norm %2, %3, %4, %5, %6 {name = "conv/bn", epsilon = 9.9999997473787516e-06 : f64} : (tensor<1x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x3x3xf32>
    %8 = qnn.constant dense<[5.300000e-01, 6.200000e-01, 1.170000e+00, 1.150000e+00]> : tensor<4xf32> {name = "conv/scale.scale"}
    %9 = qnn.constant dense<[9.000000e-01, 9.000000e-02, -7.400000e-01, -9.200000e-01]> : tensor<4xf32> {name = "conv/scale.bias"}
    %10 = qnn.scale %7, %8, %9 {name = "conv/scale", axis = 1 : i64} : (tensor<1x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x3x3xf32>
    func.return %10 : tensor<1x4x3x3xf32>
  }
}

// -----

// Deconvolution + BatchNorm + Scale: the bias-free deconv gains a bias.
// CHECK-LABEL: func.func @deconv_bn_scale
// CHECK:       %[[W:.*]] = qnn.constant {{.*}}name = "deconv.weight_fused"
// CHECK:       %[[B:.*]] = qnn.constant {{.*}}name = "deconv.bias_fused"
// CHECK:       %[[Y:.*]] = qnn.conv_transpose %x, %[[W]], %[[B]] {name = "deconv"
// CHECK-NOT:   qnn.batch_norm
// CHECK-NOT:   qnn.scale
// CHECK:       func.return %[[Y]]

// Imported from Inputs/qcc-fuse-bn-caffe-deconv.prototxt
builtin.module attributes {qcc.framework = "caffe"} {
  func.func @deconv_bn_scale(%x: tensor<1x2x3x3xf32> {qnn.name = "x"}) -> (tensor<1x3x6x6xf32> {qnn.name = "y"}) {
    %0 = qnn.constant dense<[[[[-4.600000e-01, 2.200000e-01], [-1.010000e+00, -2.100000e-01]], [[-1.600000e-01, 5.400000e-01], [2.100000e-01, 3.600000e-01]], [[-6.500000e-01, -1.300000e-01], [7.800000e-01, 1.490000e+00]]], [[[-1.260000e+00, 1.510000e+00], [1.350000e+00, 7.800000e-01]], [[2.600000e-01, -3.100000e-01], [1.460000e+00, 1.960000e+00]], [[1.800000e+00, 1.320000e+00], [3.600000e-01, -1.210000e+00]]]]> : tensor<2x3x2x2xf32> {name = "deconv.weight"}
    %1 = qnn.conv_transpose %x, %0 {name = "deconv", source = "caffe.Deconvolution", strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, output_padding = array<i64: 0, 0>, groups = 1 : i64} : (tensor<1x2x3x3xf32>, tensor<2x3x2x2xf32>) -> tensor<1x3x6x6xf32>
    %2 = qnn.constant dense<1.000000e+00> : tensor<3xf32> {name = "deconv/bn.scale"}
    %3 = qnn.constant dense<0.000000e+00> : tensor<3xf32> {name = "deconv/bn.bias"}
    %4 = qnn.constant dense<[-0.000000e+00, 6.600000e-01, -1.290000e+00]> : tensor<3xf32> {name = "deconv/bn.mean"}
    %5 = qnn.constant dense<[7.300000e-01, 1.180000e+00, 1.690000e+00]> : tensor<3xf32> {name = "deconv/bn.var"}
    %6 = qnn.batch_norm %1, %2, %3, %4, %5 {name = "deconv/bn", epsilon = 9.9999997473787516e-06 : f64} : (tensor<1x3x6x6xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x6x6xf32>
    %7 = qnn.constant dense<[7.300000e-01, 5.500000e-01, 9.000000e-01]> : tensor<3xf32> {name = "deconv/scale.scale"}
    %8 = qnn.constant dense<[-1.170000e+00, 1.740000e+00, -5.000000e-01]> : tensor<3xf32> {name = "deconv/scale.bias"}
    %9 = qnn.scale %6, %7, %8 {name = "deconv/scale", axis = 1 : i64} : (tensor<1x3x6x6xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x6x6xf32>
    func.return %9 : tensor<1x3x6x6xf32>
  }
}

// -----

// InnerProduct + BatchNorm + Scale.
// CHECK-LABEL: func.func @fc_bn_scale
// CHECK:       %[[W:.*]] = qnn.constant {{.*}}name = "fc.weight_fused"
// CHECK:       %[[B:.*]] = qnn.constant {{.*}}name = "fc.bias_fused"
// CHECK:       %[[Y:.*]] = qnn.dense %x, %[[W]], %[[B]] {name = "fc"
// CHECK-NOT:   qnn.batch_norm
// CHECK-NOT:   qnn.scale
// CHECK:       func.return %[[Y]]

// Imported from Inputs/qcc-fuse-bn-caffe-fc.prototxt
builtin.module attributes {qcc.framework = "caffe"} {
  func.func @fc_bn_scale(%x: tensor<2x8xf32> {qnn.name = "x"}) -> (tensor<2x3xf32> {qnn.name = "y"}) {
    %0 = qnn.constant dense<[[3.300000e-01, -2.600000e-01, 1.580000e+00, 1.320000e+00, 6.300000e-01, -2.200000e+00, 5.000000e-02, 6.800000e-01], [1.000000e+00, -6.200000e-01, 1.820000e+00, -1.320000e+00, -6.600000e-01, 9.400000e-01, 5.000000e-02, 2.000000e+00], [1.900000e-01, -6.300000e-01, -3.800000e-01, -1.090000e+00, -1.280000e+00, 6.300000e-01, 5.800000e-01, 1.290000e+00]]> : tensor<3x8xf32> {name = "fc.weight"}
    %1 = qnn.constant dense<[-7.500000e-01, 1.690000e+00, -2.900000e-01]> : tensor<3xf32> {name = "fc.bias"}
    %2 = qnn.dense %x, %0, %1 {name = "fc", source = "caffe.InnerProduct"} : (tensor<2x8xf32>, tensor<3x8xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    %3 = qnn.constant dense<1.000000e+00> : tensor<3xf32> {name = "fc/bn.scale"}
    %4 = qnn.constant dense<0.000000e+00> : tensor<3xf32> {name = "fc/bn.bias"}
    %5 = qnn.constant dense<[1.570000e+00, -4.300000e-01, -7.400000e-01]> : tensor<3xf32> {name = "fc/bn.mean"}
    %6 = qnn.constant dense<[7.200000e-01, 1.960000e+00, 1.830000e+00]> : tensor<3xf32> {name = "fc/bn.var"}
    %7 = qnn.batch_norm %2, %3, %4, %5, %6 {name = "fc/bn", epsilon = 9.9999997473787516e-06 : f64} : (tensor<2x3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    %8 = qnn.constant dense<[1.320000e+00, 9.800000e-01, 7.300000e-01]> : tensor<3xf32> {name = "fc/scale.scale"}
    %9 = qnn.constant dense<[5.000000e-01, 9.900000e-01, -1.600000e-01]> : tensor<3xf32> {name = "fc/scale.bias"}
    %10 = qnn.scale %7, %8, %9 {name = "fc/scale", axis = 1 : i64} : (tensor<2x3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    func.return %10 : tensor<2x3xf32>
  }
}

// -----

// BatchNorm + Scale before an unpadded conv fold into the conv after them.
// CHECK-LABEL: func.func @bn_scale_conv
// CHECK-NOT:   qnn.batch_norm
// CHECK-NOT:   qnn.scale
// CHECK:       %[[W:.*]] = qnn.constant {{.*}}name = "conv.weight_fused"
// CHECK:       %[[B:.*]] = qnn.constant {{.*}}name = "conv.bias_fused"
// CHECK:       %[[Y:.*]] = qnn.conv %x, %[[W]], %[[B]] {name = "conv"
// CHECK:       func.return %[[Y]]

// Imported from Inputs/qcc-fuse-bn-caffe-bn-conv.prototxt
builtin.module attributes {qcc.framework = "caffe"} {
  func.func @bn_scale_conv(%x: tensor<1x3x2x2xf32> {qnn.name = "x"}) -> (tensor<1x2x2x2xf32> {qnn.name = "y"}) {
    %0 = qnn.constant dense<1.000000e+00> : tensor<3xf32> {name = "pre/bn.scale"}
    %1 = qnn.constant dense<0.000000e+00> : tensor<3xf32> {name = "pre/bn.bias"}
    %2 = qnn.constant dense<[1.100000e-01, -8.000000e-02, 2.000000e-01]> : tensor<3xf32> {name = "pre/bn.mean"}
    %3 = qnn.constant dense<[1.890000e+00, 6.000000e-01, 1.760000e+00]> : tensor<3xf32> {name = "pre/bn.var"}
    %4 = qnn.batch_norm %x, %0, %1, %2, %3 {name = "pre/bn", epsilon = 9.9999997473787516e-06 : f64} : (tensor<1x3x2x2xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x2x2xf32>
    %5 = qnn.constant dense<[5.700000e-01, 8.400000e-01, 9.300000e-01]> : tensor<3xf32> {name = "pre/scale.scale"}
    %6 = qnn.constant dense<[7.900000e-01, 8.400000e-01, 8.000000e-02]> : tensor<3xf32> {name = "pre/scale.bias"}
    %7 = qnn.scale %4, %5, %6 {name = "pre/scale", axis = 1 : i64} : (tensor<1x3x2x2xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x2x2xf32>
    %8 = qnn.constant dense<[[[[-1.070000e+00]], [[8.700000e-01]], [[-1.280000e+00]]], [[[-7.100000e-01]], [[6.200000e-01]], [[-2.250000e+00]]]]> : tensor<2x3x1x1xf32> {name = "conv.weight"}
    %9 = qnn.constant dense<[3.900000e-01, -5.800000e-01]> : tensor<2xf32> {name = "conv.bias"}
    %10 = qnn.conv %7, %8, %9 {name = "conv", source = "caffe.Convolution", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x2x2xf32>, tensor<2x3x1x1xf32>, tensor<2xf32>) -> tensor<1x2x2x2xf32>
    func.return %10 : tensor<1x2x2x2xf32>
  }
}

// -----

// Must not fire into the conv: its zero padding would be shifted by the bias. BN
// and Scale merge into one qnn.scale; the conv keeps its weights.
// CHECK-LABEL: func.func @bn_scale_padded_conv
// CHECK:       %[[S:.*]] = qnn.scale %x, %{{.*}}, %{{.*}} {name = "pre/bn", axis = 1 : i64}
// CHECK-NOT:   qnn.batch_norm
// CHECK:       %[[W:.*]] = qnn.constant {{.*}}name = "conv.weight"}
// CHECK:       %[[Y:.*]] = qnn.conv %[[S]], %[[W]] {name = "conv"
// CHECK:       func.return %[[Y]]

// Imported from Inputs/qcc-fuse-bn-caffe-bn-padded-conv.prototxt
builtin.module attributes {qcc.framework = "caffe"} {
  func.func @bn_scale_padded_conv(%x: tensor<1x3x2x2xf32> {qnn.name = "x"}) -> (tensor<1x2x2x2xf32> {qnn.name = "y"}) {
    %0 = qnn.constant dense<1.000000e+00> : tensor<3xf32> {name = "pre/bn.scale"}
    %1 = qnn.constant dense<0.000000e+00> : tensor<3xf32> {name = "pre/bn.bias"}
    %2 = qnn.constant dense<[1.030000e+00, -1.930000e+00, -2.400000e-01]> : tensor<3xf32> {name = "pre/bn.mean"}
    %3 = qnn.constant dense<[1.510000e+00, 1.570000e+00, 7.500000e-01]> : tensor<3xf32> {name = "pre/bn.var"}
    %4 = qnn.batch_norm %x, %0, %1, %2, %3 {name = "pre/bn", epsilon = 9.9999997473787516e-06 : f64} : (tensor<1x3x2x2xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x2x2xf32>
    %5 = qnn.constant dense<[9.000000e-01, 1.410000e+00, 1.060000e+00]> : tensor<3xf32> {name = "pre/scale.scale"}
    %6 = qnn.constant dense<[-4.800000e-01, 1.390000e+00, 3.500000e-01]> : tensor<3xf32> {name = "pre/scale.bias"}
    %7 = qnn.scale %4, %5, %6 {name = "pre/scale", axis = 1 : i64} : (tensor<1x3x2x2xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x2x2xf32>
    %8 = qnn.constant dense<[[[[-1.430000e+00, -1.400000e-01, -7.700000e-01], [-1.420000e+00, 2.600000e-01, -5.700000e-01], [-1.030000e+00, -1.040000e+00, 2.700000e-01]], [[3.600000e-01, 1.320000e+00, -1.000000e-02], [1.040000e+00, 1.400000e+00, 1.150000e+00], [-2.370000e+00, 1.230000e+00, 3.400000e-01]], [[4.200000e-01, 3.700000e-01, 3.800000e-01], [3.200000e-01, -3.600000e-01, -1.900000e+00], [-1.100000e-01, -8.000000e-01, 1.080000e+00]]], [[[-2.900000e-01, 8.000000e-02, -8.500000e-01], [-5.100000e-01, -1.000000e-02, -1.490000e+00], [3.000000e-01, -1.100000e-01, -1.190000e+00]], [[-2.400000e+00, 5.100000e-01, -3.000000e-01], [-5.300000e-01, -2.400000e-01, 1.820000e+00], [-5.000000e-02, 9.000000e-02, -1.490000e+00]], [[1.650000e+00, 9.200000e-01, 1.070000e+00], [5.000000e-02, 9.200000e-01, 3.700000e-01], [6.100000e-01, -1.500000e-01, -1.470000e+00]]]]> : tensor<2x3x3x3xf32> {name = "conv.weight"}
    %9 = qnn.conv %7, %8 {name = "conv", source = "caffe.Convolution", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x2x2xf32>, tensor<2x3x3x3xf32>) -> tensor<1x2x2x2xf32>
    func.return %9 : tensor<1x2x2x2xf32>
  }
}
