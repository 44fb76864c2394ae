"""Advice from a job's history: request/limit recommendations (backtested against the
CI Sizer and VPA formulas) and regressions against the job's baseline.

Pure functions over plain values: no database, no HTTP, no clock.  The store
(:mod:`resmon.store.advice`, :mod:`resmon.store.baseline`) reads the runs and
hands them here; the server and ``resmon query --db`` get the same answers.
"""
