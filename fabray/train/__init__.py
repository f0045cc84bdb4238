"""Training on Ray: one Ray Train TensorflowTrainer per model, run concurrently (DESIGN §4).

`driver` runs `fabray train` (and, with a warm start, a replay series and a deadline, `fabray
retrain`: `retrain`); `loop` is the per-worker train function (resume after a fault, warm start,
time budget); `replay` joins new and replayed windows (pure). The pure pieces (precision,
resources, run directory, replay) import neither TensorFlow nor Ray at module level; `driver`
and `loop` do.
"""
