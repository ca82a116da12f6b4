"""Training dynamics: what a few optimizer steps look like on a loss-landscape slice.

Starting at the prepared weights theta_0 = theta*, ``llmscape.train`` takes T steps on the
chosen tensors (a phrase or a corpus), saving theta_t every ``save_every`` steps. With two
directions d, e drawn once at theta_0 (random, normalized as the studies' are):

* re-centred slices f_t(a, b) = L(theta_t + a d + b e) on one grid, one per saved step;
* the fixed slice f_0 with each theta_t projected onto its plane: delta_t = theta_t - theta_0
  splits into c_1 d + c_2 e (least squares, through the 2 x 2 Gram matrix of d, e) and a
  remainder orthogonal to both; we report (c_1, c_2), the loss there, the true loss at
  theta_t and the fraction ||remainder|| / ||delta_t|| of the step that lies outside the
  plane (``geometry.plane_projection``);
* the same slices for the phrase and for a corpus average, with a roughness measure
  (``geometry.roughness``, ``geometry.local_minima``);
* the top-k next tokens of a prompt at theta*, at each saved step and along d;
* the Hessian's lambda_max, lambda_min and trace over the trained tensors at each saved step
  (llmscape.curvature);
* trajectory PCA (Li et al. 2018): the principal directions of theta_t - theta_T from the
  S x S Gram matrix of the saved steps (``geometry.gram_pca``, never a P x P matrix), the
  landscape around theta_T in their plane, and the loss at the path's projection into
  that plane beside the loss at the true points.

Modules: ``corpus`` (a real text found at run time), ``geometry`` (projections, PCA,
roughness), ``settings`` (the config's ``dynamics`` section: checks, saved steps, job
configs), ``steps`` (one function per workflow job), ``report`` (tables, figures and the
paper's context).
"""
