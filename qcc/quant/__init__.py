"""Post-training quantization: configuration, calibration statistics
(`observers`), range algorithms (`algorithms`), records and reports, calibration
data (`calib_data`) and the files a pipeline names (`inputs`)."""
