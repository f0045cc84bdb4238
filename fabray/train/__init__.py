"""Training on Ray: one Ray Train TensorflowTrainer per model, run concurrently (DESIGN §4).

The pure pieces (precision, resources, run directory) import neither TensorFlow nor Ray at module
level; `driver` and `loop` do.
"""
