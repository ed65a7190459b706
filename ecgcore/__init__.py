"""ecgcore: all shared ECG processing of the workbench (no Dash, no web).

The public API is small and flat; each function takes and returns plain data.
"""

__version__ = "0.1.0"
