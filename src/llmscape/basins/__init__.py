"""Basins (issue #9; Chen et al. 2025, "Unveiling the Basin-Like Loss Landscape in LLMs").

Around its trained weights theta* a model sits in a basin: along most (random) directions d
the loss L(theta* + a d) and its capabilities stay at their centre values for |a| up to a
radius, and collapse beyond it; along the worst direction the radius is much smaller. This
package measures those radii, with uncertainty, for the loss and for capability probe sets
(llmscape.probes) computed in the same engine pass:

- ``search``: the radius along one direction for each metric, by bracketing and bisection
  (every evaluated point recorded), and the bootstrap confidence interval of a median;
- ``directions``: worst-case directions (projected gradient ascent under the random
  directions' norm) and checkpoint directions (another model's weights minus theta*);
- ``line``: metrics along a direction from a grid engine, and the curvature check (the
  slice's second difference at the centre against d^T H d from a Hessian-vector product);
- ``finetune``: short fine-tunes whose deltas are checkpoint directions;
- ``store``: the basin HDF5 file; ``report``: the table and Chen-style figure;
- ``plan``: what a config's probes/finetune/basins sections expand into and what in them is
  wrong; ``steps``: the workflow's jobs.

Importing this package (the Snakefile does, for ``plan``) imports neither torch nor transformers.
"""
