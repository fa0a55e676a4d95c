"""Graphs: periodic neighbour lists and triplets in plain torch (:mod:`~tracer.graphs.periodic`,
:mod:`~tracer.graphs.batched`; cell lists for large cells, :mod:`~tracer.graphs.cell_lists`),
stored as a compact dataset (:mod:`~tracer.graphs.dataset`) and read as batches
(:mod:`~tracer.graphs.batch`, :mod:`~tracer.graphs.padding`)."""
