"""One target set's curvature summary (the ``spectrum`` of a layer entry), its file and its table.

What is computed, all for the Hessian H of the landscape loss over the targets:

- the top-k eigenpairs by |lambda| (``eigen``), with residuals ||H v - lambda v||;
- the algebraic ends lambda_max and lambda_min (a negative lambda_min is negative
  curvature: the loss bends downwards along its eigenvector) and their ratio

      lambda_max / |lambda_min|     (inf when lambda_min = 0),

  how dominant the top curvature is over the most negative one. An end already in the
  top-k by magnitude is taken from there (if a positive eigenvalue is among them, the
  largest one is lambda_max; likewise for negative ones and lambda_min); otherwise one
  more Lanczos run for that end finds it;
- tr(H) by Hutchinson and the spectral density by SLQ (``density``);
- the singular values of the targeted weight matrices (``llmscape.weight_spectra``);
- on request (``vectors=True``), three unit directions over the targets: the eigenvectors of
  lambda_max and lambda_min (from wherever their values came) and a near-zero-curvature one,
  the Ritz vector of the top-k Lanczos run whose Ritz value is nearest 0. It is no converged
  eigenvector: its Rayleigh quotient v^T H v and residual ||H v - (v^T H v) v|| are stored
  beside it (one product), so a reader sees how near zero its curvature really is. With the
  power solver the nearest-0 Ritz vector comes from the lambda_min Lanczos run when one ran,
  else it is absent. (llmscape.geometry draws the loss along these three.)

Spectrum file layout (``save_spectrum``; plain h5py; each dataset is present only when
that part was computed, the attributes always are):

    /eigenvalues            [k] float64   top-k Hessian eigenvalues (order per attr ``which``)
    /residuals              [k] float64   ||H v - lambda v|| per eigenpair
    /converged              [k] bool
    /lambda_max             []  float64   largest algebraic eigenvalue
    /lambda_max_residual    []  float64
    /lambda_min             []  float64   smallest algebraic eigenvalue (negative = negative curvature)
    /lambda_min_residual    []  float64
    /trace                  []  float64   Hutchinson estimate of tr(H)
    /trace_se               []  float64   its standard error
    /trace_samples          [m] float64   the probe values z^T H z
    /density/grid           [G] float64   SLQ spectral density, Gaussian-broadened
    /density/values         [G] float64   (integrates to 1 over the grid)
    /density/nodes          [P, S] float64  Ritz values per probe (NaN-padded)
    /density/weights        [P, S] float64  quadrature weights per probe (0-padded)
    /weight_singular_values/<parameter name>  [r] float64  descending singular values;
                                              attr ``condition_number`` = s_max / s_min
    /vectors/<name>         [n] float32   (``vectors=True``) unit directions, the targets flattened and
                                          concatenated in attr ``targets`` order; name: lambda_max,
                                          lambda_min, near_zero; attrs ``rayleigh`` (the eigenvalue for
                                          the ends; v^T H v, one product, for near_zero), ``residual``
                                          (||H v - rayleigh v||) and, for near_zero, ``ritz_value``
    attrs: format = "llmscape-spectrum", format_version = 2, targets (JSON list), n_params,
           which, method, seed, n_hvp, seconds (wall time of the computation), lambda_ratio,
           provenance (JSON from the caller), density_sigma (when a density is stored)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from llmscape import h5io
from llmscape.curvature.density import DensityEstimate, HutchinsonTrace, SpectralDensity, TraceEstimate
from llmscape.curvature.eigen import Lanczos, eigensolver
from llmscape.curvature.operators import HessianOperator
from llmscape.curvature.target_loss import TargetLoss
from llmscape.data import EvalSet
from llmscape.weight_spectra import condition_number, layer_matrices, weight_spectra

log = logging.getLogger("llmscape")


def lambda_ratio(lambda_max: float, lambda_min: float) -> float:
    """lambda_max / |lambda_min|: how dominant the top curvature is over the most negative one (inf if 0)."""
    return float(lambda_max / abs(lambda_min)) if lambda_min != 0 else float("inf")


@dataclass
class Spectrum:
    """Curvature summary of one target set; every part optional except targets and n_params."""

    targets: list[str]
    n_params: int
    eigenvalues: np.ndarray | None = None
    residuals: np.ndarray | None = None
    converged: np.ndarray | None = None
    lambda_max: float | None = None
    lambda_max_residual: float | None = None
    lambda_min: float | None = None
    lambda_min_residual: float | None = None
    trace: TraceEstimate | None = None
    density: DensityEstimate | None = None
    weight_singular_values: dict[str, np.ndarray] = field(default_factory=dict)
    # name (lambda_max, lambda_min, near_zero) -> (unit vector [n] float32, attrs: rayleigh, residual, ...)
    vectors: dict[str, tuple[np.ndarray, dict]] = field(default_factory=dict)
    which: str = "magnitude"
    method: str = "lanczos"
    seed: int = 0
    n_hvp: int = 0
    seconds: float = 0.0

    @property
    def ratio(self) -> float | None:
        """lambda_max / |lambda_min| (None unless both are known)."""
        if self.lambda_max is None or self.lambda_min is None:
            return None
        return lambda_ratio(self.lambda_max, self.lambda_min)


def compute_spectrum(
    model: torch.nn.Module,
    data: EvalSet,
    targets: list[str],
    k: int = 3,
    method: str = "lanczos",
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
    trace_probes: int = 30,
    density_probes: int = 4,
    density_steps: int = 30,
    vectors: bool = False,
) -> Spectrum:
    """Top-k eigenpairs (largest |lambda|), lambda_max/lambda_min, Hutchinson trace, SLQ density, weight spectra.

    Parts with a zero count (``trace_probes=0``, ``density_probes=0``, ``k=0``) are skipped.
    ``vectors``: also keep the lambda_max, lambda_min and near-zero directions (module docstring).
    Weight spectra cover the targeted 2-D weights inside decoder layers. Use a
    float32 (or float64) model: second derivatives in bf16 are noise.
    """
    t0 = time.perf_counter()
    op = HessianOperator(TargetLoss(model, data, targets))
    spec = Spectrum(list(targets), op.n, method=method, seed=seed)
    pairs, near = None, None
    if k:
        log.info("spectrum of %d parameters: top-%d eigenpairs by %s", op.n, k, method)
        solver = eigensolver(method, tol=tol, max_iter=max_iter, seed=seed)
        pairs = solver.eigenpairs(op, k, nearest=0.0) if vectors and method == "lanczos" else solver.eigenpairs(op, k)
        spec.eigenvalues, spec.residuals, spec.converged = pairs.eigenvalues, pairs.residuals, pairs.converged
        near = pairs.nearest
    ends = {}
    for end in ("largest", "smallest"):
        value, residual, vector, nearest = _spectrum_end(op, spec, pairs, end, tol, max_iter, seed, vectors)
        near = near or nearest
        ends["lambda_max" if end == "largest" else "lambda_min"] = vector
        setattr(spec, "lambda_max" if end == "largest" else "lambda_min", value)
        setattr(spec, "lambda_max_residual" if end == "largest" else "lambda_min_residual", residual)
    if vectors:  # an end's vector: its value and true residual are known already (no product)
        for name, v in ends.items():
            value, residual = getattr(spec, name), getattr(spec, f"{name}_residual")
            spec.vectors[name] = ((v / v.norm()).to(torch.float32).numpy(), {"rayleigh": value, "residual": residual})
        if near is not None:
            v, attrs = _rayleigh(op, near[1])
            spec.vectors["near_zero"] = (v, attrs | {"ritz_value": near[0]})
    if trace_probes:
        log.info("Hutchinson trace: %d probes (after %d products)", trace_probes, op.n_hvp)
        spec.trace = HutchinsonTrace(trace_probes, seed).estimate(op)
    if density_probes:
        log.info("spectral density: %d probes x %d Lanczos steps", density_probes, density_steps)
        spec.density = SpectralDensity(density_probes, density_steps, seed).estimate(op)
    matrices = layer_matrices(op.loss.shapes, op.loss.arch.layout.prefix)
    spec.weight_singular_values = weight_spectra({t: op.loss.params[t] for t in matrices}) if matrices else {}
    spec.n_hvp, spec.seconds = op.n_hvp, time.perf_counter() - t0
    return spec


def section_spectrum(model: torch.nn.Module, data: EvalSet, targets: list[str], section: dict) -> Spectrum:
    """``compute_spectrum`` with the keys of a config section (a study's ``curvature``, the dynamics study's
    ``curvature``, the geometry study's ``exact``): a part whose keys the section lacks is not computed
    (no ``density_probes``: no density; no ``vectors``: no vectors), no ``solver`` means Lanczos."""
    return compute_spectrum(
        model,
        data,
        targets,
        k=section["k"],
        method=section.get("solver", "lanczos"),
        tol=section["tol"],
        max_iter=section["max_iter"],
        seed=section["seed"],
        trace_probes=section["trace_probes"],
        density_probes=section.get("density_probes", 0),
        density_steps=section.get("density_steps", 2),
        vectors=section.get("vectors", False),
    )


def _spectrum_end(op, spec: Spectrum, pairs, end: str, tol: float, max_iter: int, seed: int, vectors: bool = False):
    """lambda_max (``end="largest"``) or lambda_min: from the top-k by magnitude when it must be there.

    Returns (value, residual, its eigenvector, the nearest-0 Ritz pair of an extra Lanczos run or None)."""
    if spec.eigenvalues is not None:
        vals = np.asarray(spec.eigenvalues)
        side = vals > 0 if end == "largest" else vals < 0
        if side.any():
            i = np.flatnonzero(side)[np.argmax(vals[side]) if end == "largest" else np.argmin(vals[side])]
            return float(vals[i]), float(spec.residuals[i]), pairs.eigenvectors[i], None
    found = Lanczos(tol=tol, max_iter=max_iter, seed=seed, which=end).eigenpairs(op, 1, 0.0 if vectors else None)
    return float(found.eigenvalues[0]), float(found.residuals[0]), found.eigenvectors[0], found.nearest


def _rayleigh(op, v: torch.Tensor) -> tuple[np.ndarray, dict]:
    """A unit vector as float32 with its Rayleigh quotient v^T H v and residual ||H v - (v^T H v) v|| (one product)."""
    v = v.to(torch.float64) / v.norm()
    hv = op.matvec(v)
    rq = float(v @ hv)
    return v.to(torch.float32).numpy(), {"rayleigh": rq, "residual": float((hv - rq * v).norm())}


def save_spectrum(path: str | Path, spectrum: Spectrum, provenance: dict | None = None) -> None:
    """Write a spectrum file (layout in the module docstring)."""
    s = spectrum
    with h5io.write(path, "spectrum") as f:
        if s.eigenvalues is not None:
            f.create_dataset("eigenvalues", data=np.asarray(s.eigenvalues, dtype=np.float64))
            f.create_dataset("residuals", data=np.asarray(s.residuals, dtype=np.float64))
            f.create_dataset("converged", data=np.asarray(s.converged, dtype=bool))
        for end in ("lambda_max", "lambda_min"):
            if getattr(s, end) is not None:
                f.create_dataset(end, data=np.float64(getattr(s, end)))
                f.create_dataset(f"{end}_residual", data=np.float64(getattr(s, f"{end}_residual")))
        if s.trace is not None:
            f.create_dataset("trace", data=np.float64(s.trace.trace))
            f.create_dataset("trace_se", data=np.float64(s.trace.se))
            f.create_dataset("trace_samples", data=np.asarray(s.trace.samples, dtype=np.float64))
        if s.density is not None:
            g = f.create_group("density")
            g.create_dataset("grid", data=s.density.grid)
            g.create_dataset("values", data=s.density.density)
            g.create_dataset("nodes", data=s.density.nodes)
            g.create_dataset("weights", data=s.density.weights)
            f.attrs["density_sigma"] = s.density.sigma
        if s.weight_singular_values:
            g = f.create_group("weight_singular_values")
            for name, sv in s.weight_singular_values.items():
                ds = g.create_dataset(name, data=np.asarray(sv, dtype=np.float64))
                ds.attrs["condition_number"] = condition_number(sv)
        if s.vectors:
            g = f.create_group("vectors")
            for name, (v, attrs) in s.vectors.items():
                h5io.set_attrs(g.create_dataset(name, data=np.asarray(v, dtype=np.float32)), attrs)
        ratio = s.ratio
        h5io.set_attrs(
            f,
            {
                "targets": list(s.targets),
                "n_params": int(s.n_params),
                "which": s.which,
                "method": s.method,
                "seed": int(s.seed),
                "n_hvp": int(s.n_hvp),
                "seconds": float(s.seconds),
                "lambda_ratio": np.nan if ratio is None else ratio,
                "provenance": provenance or {},
            },
        )


def load_spectrum(path: str | Path) -> tuple[Spectrum, dict]:
    """A spectrum file back as (Spectrum, provenance dict)."""
    with h5io.read(path, "spectrum") as f:
        a = h5io.get_attrs(f)
        s = Spectrum(a["targets"], int(a["n_params"]), which=a["which"], method=a["method"])
        s.seed, s.n_hvp, s.seconds = int(a["seed"]), int(a["n_hvp"]), float(a["seconds"])
        if "eigenvalues" in f:
            s.eigenvalues, s.residuals, s.converged = f["eigenvalues"][...], f["residuals"][...], f["converged"][...]
        for end in ("lambda_max", "lambda_min"):
            if end in f:
                setattr(s, end, float(f[end][()]))
                setattr(s, f"{end}_residual", float(f[f"{end}_residual"][()]))
        if "trace" in f:
            s.trace = TraceEstimate(float(f["trace"][()]), float(f["trace_se"][()]), f["trace_samples"][...])
        if "density" in f:
            g = f["density"]
            s.density = DensityEstimate(
                g["grid"][...], g["values"][...], g["nodes"][...], g["weights"][...], float(a["density_sigma"])
            )
        if "weight_singular_values" in f:
            g = f["weight_singular_values"]
            s.weight_singular_values = {name: g[name][...] for name in g}
        if "vectors" in f:
            g = f["vectors"]
            s.vectors = {name: (g[name][...], h5io.get_attrs(g[name])) for name in g}
        return s, a["provenance"]


def spectra_table(paths: list[str | Path], k: int | None = None):
    """One row per spectrum file (target set): lambda_1..k, lambda_max, lambda_min, ratio, trace, se, n_params.

    ``k`` fixes the number of eigenvalue columns (default: the most any file holds;
    missing ones are NaN). Columns ``target`` (targets joined by ',') and ``path`` identify rows,
    with ``study``, ``landscape``, ``layer``, ``layer_index`` and ``model_sha256`` copied from each
    file's provenance where present, and ``model``, the model's name from its config.
    """
    import pandas as pd

    loaded = [(Path(p), *load_spectrum(p)) for p in paths]
    if k is None:
        k = max((len(s.eigenvalues) for _, s, _ in loaded if s.eigenvalues is not None), default=0)
    rows = []
    for path, s, prov in loaded:
        row = {"path": str(path), "target": ",".join(s.targets), "n_params": s.n_params}
        for i in range(k):
            has = s.eigenvalues is not None and i < len(s.eigenvalues)
            row[f"lambda_{i + 1}"] = float(s.eigenvalues[i]) if has else np.nan
        row["all_converged"] = bool(np.all(s.converged)) if s.converged is not None else None
        row["lambda_max"] = s.lambda_max if s.lambda_max is not None else np.nan
        row["lambda_min"] = s.lambda_min if s.lambda_min is not None else np.nan
        row["lambda_ratio"] = s.ratio if s.ratio is not None else np.nan
        row["trace"] = s.trace.trace if s.trace else np.nan
        row["trace_se"] = s.trace.se if s.trace else np.nan
        for key in ("study", "landscape", "layer", "layer_index", "model_sha256"):
            if key in prov:
                row[key] = prov[key]
        if "config" in prov:  # the model by name, not only by hash
            row["model"] = prov["config"]["model"]["name"]
        rows.append(row)
    return pd.DataFrame(rows)
