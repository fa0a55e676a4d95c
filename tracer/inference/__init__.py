"""Inference: the deep ensemble's predictions and spread (:mod:`~tracer.inference.ensemble`),
the shipped ensemble screening a chemist's files (:mod:`~tracer.inference.predict`,
:mod:`~tracer.inference.reading`, :mod:`~tracer.inference.screening`) and its applicability
domain (:mod:`~tracer.inference.applicability`, :mod:`~tracer.inference.domain_study`)."""
