"""Image–text scorers behind one contract (:class:`analysis.scorers.base.Scorer`).

Build them by name with :func:`analysis.registry.get_scorer`.
"""
