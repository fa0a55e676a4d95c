"""The audit of the paper's claims: claims as data (``claims.yaml``), what each run shows
(:mod:`tracer.audit.quantities`, :mod:`tracer.audit.checks`), verdict rules
(:mod:`tracer.audit.rules`) and the written audit (:mod:`tracer.audit.evaluate`)."""
