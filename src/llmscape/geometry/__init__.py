"""Seed 002 in full (issue #13): the estimators against an exact spectrum, extreme-curvature curves,
gradient magnitudes, attention geometry, and sharp / flat / saddle labels.

Modules, each starting with its math:

- ``exact``: a tiny Llama trained on the evaluation text by ``llmscape.train``, its exact Hessian
  over a few thousand parameters (autograd, float64 ``eigh``) beside ``llmscape.curvature``'s
  Lanczos top-k, Hutchinson trace and SLQ density on the same model;
- ``extreme``: the loss along the lambda_max, lambda_min and near-zero-curvature directions the
  seed study's spectrum job stores (``curvature.vectors``), with the quadratic prediction;
- ``gradients``: ||grad L|| at theta* per tensor and per decoder layer, relative to ||W||;
- ``attention``: per chosen layer and head, the attention weights and pre-softmax scores of a
  prompt as the model's own eager attention computes them (GQA mapped), and the heads'
  W_Q/W_K/W_V/W_O singular values, effective rank and condition number;
- ``sharpness``: lambda_max, tr/n, lambda_max/|lambda_min| and the negative density mass per
  spectrum, labelled sharp / flat / saddle by a stated rule;
- ``settings`` (the config's ``geometry`` section), ``steps`` (one function per workflow job),
  ``report`` (figures, tables, the paper's context).
"""
