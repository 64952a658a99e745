import pytest

from dit3d.nn import PRESETS, build_trunk, preset_config


@pytest.mark.parametrize("name,depth,width,heads", [
    ("DiT-S", 12, 384, 6), ("DiT-B", 12, 768, 12), ("DiT-L", 24, 1024, 16),
    ("DiT-L-3D", 24, 1152, 16), ("DiT-XL", 28, 1152, 16)])
def test_published_sizes(name, depth, width, heads):
    assert preset_config(name) == dict(depth=depth, hidden_size=width, num_heads=heads)


def test_cpu_presets_build_and_override():
    trunk = build_trunk("DiT-Mini", out_dim=7, depth=2)
    assert len(trunk.blocks) == 2 and trunk.final_layer.linear.out_features == 7
    assert {"DiT-Ti", "DiT-Mini"} <= set(PRESETS)


def test_unknown_preset_suggests_names():
    with pytest.raises(KeyError, match="Did you mean.*DiT-S"):
        build_trunk("DiT-SS")
