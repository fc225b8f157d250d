"""The captioning probe (Ma et al. 2022): captioners over the locked image-tower grid features.

* :mod:`analysis.captioning.model`: the word vocabulary and the transformer-decoder captioner.
* :mod:`analysis.captioning.xe`: the caption data of a split and cross-entropy (XE) training, cached.
* :mod:`analysis.captioning.rewards` and :mod:`analysis.captioning.scst`: rewards from any scorer or
  metric, and self-critical sequence training from the XE model.

Nothing is imported here, so that importing the package stays cheap; import the modules.
"""
