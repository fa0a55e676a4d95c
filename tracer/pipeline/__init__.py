"""The pipeline: what each DVC stage reads and writes (``*_stages``, :mod:`~tracer.pipeline.paths`,
:mod:`~tracer.pipeline.config`, :mod:`~tracer.pipeline.notebook`), runs trained on a GPU machine
and recorded here (:mod:`~tracer.pipeline.launch`, :mod:`~tracer.pipeline.cv_launch`,
:mod:`~tracer.pipeline.records`, :mod:`~tracer.pipeline.cv_records`), provenance and the record
lock, and the shipped ensemble (:mod:`~tracer.pipeline.release`)."""
