"""Live acquisition from an Arduino + AD8232: line protocol, recorder, simulator, sketch.

Nothing here imports JAX, Keras or Dash: ``ecg record`` starts in a fraction of a second.
"""
