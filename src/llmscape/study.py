"""Studies expand into landscapes: one per (layer position, direction) of a study."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LandscapeSpec:
    study: str
    layer: str  # symbolic position as written in the config: first/middle/last/all/<index>
    direction: str  # key of the study's ``directions``


def landscapes(config: dict, study: str | None = None) -> list[LandscapeSpec]:
    """All landscapes of a validated config (or of one study), in config order."""
    out = []
    for sname, s in config["studies"].items():
        if study not in (None, sname):
            continue
        for layer in s["layers"]:
            for direction in s["directions"]:
                out.append(LandscapeSpec(sname, str(layer), direction))
    return out


def target_config(config: dict, study: str, layer: str) -> dict:
    """What selects and evaluates one layer entry's targets (model, data, tensors)."""
    s = config["studies"][study]
    return {
        "model": config["model"],
        "data": config["data"],
        "study": study,
        "layer": layer,
        "tensors": s["tensors"],
        "include_1d": s["include_1d"],
    }


def landscape_config(config: dict, spec: LandscapeSpec) -> dict:
    """Everything in the config that determines one landscape's values (for provenance)."""
    s = config["studies"][spec.study]
    return target_config(config, spec.study, spec.layer) | {
        "direction": {"name": spec.direction, **s["directions"][spec.direction]},
        "grid": s["grid"],
    }


def curvature_config(config: dict, study: str, layer: str) -> dict:
    return target_config(config, study, layer) | {"curvature": config["studies"][study]["curvature"]}


def curvature_studies(config: dict) -> list[str]:
    return [name for name, s in config["studies"].items() if s["curvature"]["enabled"]]
