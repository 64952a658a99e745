"""Named trunk sizes: ``"DiT-S"`` -> constructor arguments of :class:`DiTTrunk`."""
from __future__ import annotations

import difflib
from typing import Any

from dit3d.nn.trunk import DiTTrunk

#: depth / width / heads of the DiT family (Peebles & Xie 2023, Table 1), a 3-D-grid
#: variant of DiT-L whose width divides by 6 (DiT-3D, Mo et al. 2023), and CPU sizes.
PRESETS: dict[str, dict[str, int]] = {
    "DiT-Mini": dict(depth=4, hidden_size=96, num_heads=4),
    "DiT-Ti": dict(depth=12, hidden_size=192, num_heads=3),
    "DiT-S": dict(depth=12, hidden_size=384, num_heads=6),
    "DiT-B": dict(depth=12, hidden_size=768, num_heads=12),
    "DiT-L": dict(depth=24, hidden_size=1024, num_heads=16),
    "DiT-L-3D": dict(depth=24, hidden_size=1152, num_heads=16),
    "DiT-XL": dict(depth=28, hidden_size=1152, num_heads=16),
}


def lookup_preset(registry: dict[str, dict[str, Any]], name: str, what: str = "trunk") -> dict[str, Any]:
    """A copy of ``registry[name]``; unknown names raise with the closest matches."""
    try:
        return dict(registry[name])
    except KeyError:
        close = difflib.get_close_matches(name, registry, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise KeyError(f"unknown {what} preset {name!r}.{hint} Known presets: {sorted(registry)}") from None


def preset_config(name: str) -> dict[str, int]:
    """Arguments of a named trunk preset; unknown names raise with the closest matches."""
    return lookup_preset(PRESETS, name)


def build_trunk(name: str, **overrides: Any) -> DiTTrunk:
    """Build a :class:`DiTTrunk` from a preset, overriding any argument.

    Example:
        >>> build_trunk("DiT-Mini", out_dim=8).blocks[0].attn.num_heads
        4
    """
    return DiTTrunk(**{**preset_config(name), **overrides})
