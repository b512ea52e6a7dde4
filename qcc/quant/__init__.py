"""Post-training quantization: configuration, calibration statistics
(`observers`), range algorithms (`algorithms`), records and reports."""
