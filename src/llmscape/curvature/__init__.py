"""Curvature of the landscape loss: the Hessian over the target tensors, probed by Hessian-vector products.

H = d^2 L / d theta^2 for the landscape loss L of ``llmscape.loss``, theta the target
tensors only (every other weight frozen at theta*). H is never formed: everything
below needs only products H v, each one double backward. Modules, from the model to
the results file:

- ``head``: token NLL through the vocabulary head in chunks, differentiable twice
  without ever holding the [tokens, vocab] logits;
- ``target_loss``: ``TargetLoss``, L as a function of the targets (value, gradient,
  H v), reusing the untouched lower layers' activations;
- ``operators``: ``HessianOperator``, H on flat float64 vectors (``MatrixOperator``: an
  explicit matrix behind the same interface);
- ``eigen``: ``Lanczos``, ``PowerIteration``: extreme eigenpairs of any such operator;
- ``density``: ``HutchinsonTrace`` (tr H) and ``SpectralDensity`` (SLQ) from random probes;
- ``directions``: ``hessian_directions``, top eigenvectors as landscape axes;
- ``spectrum``: ``compute_spectrum``, one target set's summary, its HDF5 file and table.

Singular values of the weight matrices themselves live in ``llmscape.weight_spectra``.
"""

from llmscape.curvature.density import DensityEstimate, HutchinsonTrace, SpectralDensity, TraceEstimate
from llmscape.curvature.directions import HessianDirections, hessian_directions
from llmscape.curvature.eigen import Eigenpairs, Lanczos, PowerIteration, eigensolver
from llmscape.curvature.operators import HessianOperator, MatrixOperator
from llmscape.curvature.spectrum import (
    Spectrum,
    compute_spectrum,
    load_spectrum,
    save_spectrum,
    section_spectrum,
    spectra_table,
)
from llmscape.curvature.target_loss import TargetLoss

__all__ = [
    "DensityEstimate",
    "Eigenpairs",
    "HessianDirections",
    "HessianOperator",
    "HutchinsonTrace",
    "Lanczos",
    "MatrixOperator",
    "PowerIteration",
    "SpectralDensity",
    "Spectrum",
    "TargetLoss",
    "TraceEstimate",
    "compute_spectrum",
    "section_spectrum",
    "eigensolver",
    "hessian_directions",
    "load_spectrum",
    "save_spectrum",
    "spectra_table",
]
