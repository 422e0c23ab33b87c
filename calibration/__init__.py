"""INT8 calibration: calibration data, symmetric Q/DQ quantization and range caches."""
