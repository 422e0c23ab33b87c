"""INT8: calibration data, symmetric Q/DQ quantization, range caches, the int8 gate, and the INT8
graph an INT8 engine is built from. Sits above ``export``: it quantizes the graph export made and
gates it with export's parity machinery; ``export`` never imports it."""
