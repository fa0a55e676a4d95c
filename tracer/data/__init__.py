"""Data: each source read into one validated canonical table of crystals, a target and its unit
(:mod:`~tracer.data.sources`, :mod:`~tracer.data.validation`, :mod:`~tracer.data.units`,
:mod:`~tracer.data.table`), fetched and verified by sha256 (:mod:`~tracer.data.download`), and
split without leaks (:mod:`~tracer.data.splits`, :mod:`~tracer.data.folds`); the perovskite and
pooled tables (:mod:`~tracer.data.perovskites`, :mod:`~tracer.data.pooled`)."""
