// RUN: qcc-opt %s --split-input-file -p 'qcc-calibrate{data="%S/Inputs/qcc-calibrate.npz"}' | filecheck %s
// RUN: qcc-opt %s --split-input-file -p 'qcc-calibrate{data="%S/Inputs/qcc-calibrate.npz" batch_num=1}' | filecheck %s --check-prefix=ONE
// RUN: not qcc-opt %s --split-input-file -p qcc-calibrate 2>&1 | filecheck %s --check-prefix=NODATA

// Inputs/qcc-calibrate.npz holds x: 8 x 4 = linspace(-1, 3, 32) with x[0, 1] = -inf,
// written by
//   x = np.linspace(-1.0, 3.0, 32, dtype=np.float32).reshape(8, 4); x[0, 1] = -np.inf
// Hand calculation, all batches: the -inf is skipped (skipped = 1), the range
// is [-1, 3]: scale = 4 / 255, zero point = round(-128 + 1 / scale) = round(-64.25) = -64.
// Weights (ARQ, symmetric, narrow, per row): 1.27 / 127 = 0.01, 0.635 / 127 = 0.005.
// CHECK-LABEL: func.func @main
// CHECK: %[[X:.*]] = quant.fake_quant %x {id = "fc.input", algorithm = "minmax", min = -1.000000e+00 : f64, max = 3.000000e+00 : f64, symmetric = 0 : i64, skipped = 1 : i64, qtype = !quant.uniform<i8:f32, 0.01568627450980392:-64>}
// CHECK-NEXT: %[[W:.*]] = quant.fake_quant %w {id = "fc.weight", algorithm = "arq", {{.*}}qtype = !quant.uniform<i8<-127:127>:f32:0, {0.009999999849815068,0.004999999924907534}>}
// CHECK-NEXT: qnn.dense %[[X]], %[[W]] {name = "fc"}
// CHECK-NOT: quant.observe
// With batch_num=1 only rows 0-1 are seen: data range [-1, -0.0968], extended to
// include 0: scale = 1 / 255, zero point = round(-128 + 255) = 127.
// ONE: quant.fake_quant %x {id = "fc.input", algorithm = "minmax", min = -1.000000e+00 : f64, max = -0.096774190664291382 : f64, {{.*}}qtype = !quant.uniform<i8:f32, 0.00392156862745098:127>}
// NODATA: error: qcc-calibrate needs data=FILE.npz
func.func @main(%x: tensor<2x4xf32> {qnn.name = "x"}) -> tensor<2x2xf32> {
  %w = qnn.constant dense<[[0.5, -1.27, 0.25, 0.0], [0.1, 0.2, -0.3, 0.635]]> : tensor<2x4xf32> {name = "fc.weight"}
  %0 = quant.observe %x {kind = "activation", algorithm = "minmax", bits = 8 : i64, symmetric = false, axis = -1 : i64, narrow_range = false, id = "fc.input"} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  %1 = quant.observe %w {kind = "weight", algorithm = "arq", bits = 8 : i64, symmetric = true, axis = 0 : i64, narrow_range = true, id = "fc.weight"} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  %2 = qnn.dense %0, %1 {name = "fc"} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x2xf32>
  func.return %2 : tensor<2x2xf32>
}

// -----

// Must not fire: a module without observers comes out unchanged.
// CHECK-LABEL: func.func @main
// CHECK-NOT: quant.fake_quant
// CHECK: qnn.relu %x
func.func @main(%x: tensor<2x4xf32> {qnn.name = "x"}) -> tensor<2x4xf32> {
  %0 = qnn.relu %x : (tensor<2x4xf32>) -> tensor<2x4xf32>
  func.return %0 : tensor<2x4xf32>
}
