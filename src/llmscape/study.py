"""Studies expand into landscapes: one per (layer position, direction) of a study."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LandscapeSpec:
    study: str
    layer: str  # the layer position as it appears in file names (``layer_token``)
    direction: str  # key of the study's ``directions``


def layer_token(position: str | int) -> str:
    """A layer position (first/middle/last/all/<index>) as written in file names: as in the
    config, except that a negative index -k becomes ``m<k>``, so no file name starts with a dash."""
    pos = str(position)
    return f"m{pos[1:]}" if pos.startswith("-") else pos


def layer_position(token: str) -> str:
    """The config's layer position of a file-name token (inverse of ``layer_token``)."""
    return f"-{token[1:]}" if token.startswith("m") and token[1:].isdigit() else token


def layer_tokens(config: dict, study: str) -> list[str]:
    return [layer_token(p) for p in config["studies"][study]["layers"]]


def landscapes(config: dict, study: str | None = None) -> list[LandscapeSpec]:
    """All landscapes of a validated config (or of one study), in config order."""
    out = []
    for sname, s in config["studies"].items():
        if study not in (None, sname):
            continue
        for layer in s["layers"]:
            for direction in s["directions"]:
                out.append(LandscapeSpec(sname, layer_token(layer), direction))
    return out


def target_config(config: dict, study: str, layer: str) -> dict:
    """What selects and evaluates one layer entry's targets (model, data, tensors); ``layer`` is
    the entry's file-name token, stored as the config's position."""
    s = config["studies"][study]
    return {
        "model": config["model"],
        "data": config["data"],
        "study": study,
        "layer": layer_position(layer),
        "tensors": s["tensors"],
        "include_1d": s["include_1d"],
    }


def landscape_config(config: dict, spec: LandscapeSpec) -> dict:
    """Everything in the config that determines one landscape's values (for provenance)."""
    s = config["studies"][spec.study]
    capabilities = {"capabilities": s["capabilities"]} if s.get("capabilities") else {}  # probe sets scored too
    return (
        target_config(config, spec.study, spec.layer)
        | {
            "direction": {"name": spec.direction, **s["directions"][spec.direction]},
            "grid": s["grid"],
        }
        | capabilities
    )


def directions_config(config: dict, spec: LandscapeSpec) -> dict:
    """What one landscape's directions depend on: its landscape_config with only the grid's number of
    axes (``dims``), so that changing a grid's extent or points reruns its grid jobs, not its directions
    (a Hessian direction's Lanczos run)."""
    job = landscape_config(config, spec)
    return job | {"grid": {"dims": job["grid"]["dims"]}}


def curvature_config(config: dict, study: str, layer: str) -> dict:
    return target_config(config, study, layer) | {"curvature": config["studies"][study]["curvature"]}


def curvature_studies(config: dict) -> list[str]:
    return [name for name, s in config["studies"].items() if s["curvature"]["enabled"]]


def name_clash(config: dict, section: str, what: str) -> list[str]:
    """A config problem when a study shares its name (case-insensitively) with a top-level section whose files
    go under ``figures/<section>/`` and ``tables/<section>/``; ``what``: the section in words."""
    clash = [name for name in config.get("studies", {}) if name.lower() == section]
    if not clash:
        return []
    return [
        f"config['studies'] has a study named {clash[0]!r}: its files would collide with the {what} "
        f"(figures/{section}/, tables/{section}/); rename it"
    ]
