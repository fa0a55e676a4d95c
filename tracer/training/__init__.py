"""Training: one ensemble member by the one loop (:mod:`~tracer.training.trainer`,
:mod:`~tracer.training.loop`, :mod:`~tracer.training.steps`), its settings, optimiser,
normalisation, batches and checkpoints, on several GPUs (:mod:`~tracer.training.distributed`);
ALIGNN on the same split (:mod:`~tracer.training.alignn`)."""
