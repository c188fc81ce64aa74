"""cnnbench: reference CNNs, verified ONNX export and one benchmark harness.

Importing this package is cheap: torch and the runtimes are imported by the modules that
need them, never here.
"""

__version__ = "0.1.0"
