"""Every name a package's ``__all__`` promises resolves (the lazy exports included), and the
README's module-level calls exist where it says."""
import importlib

import pytest

PACKAGES = ["dit3d", "dit3d.nn", "dit3d.objectives", "dit3d.tokenizers", "dit3d.models", "dit3d.data",
            "dit3d.chem", "dit3d.metrics"]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves(name):
    module = importlib.import_module(name)
    missing = [n for n in module.__all__ if getattr(module, n, None) is None]
    assert not missing, f"{name}.__all__ names {missing}, which do not resolve"


def test_the_memory_estimate_the_readme_calls_is_exported():
    import dit3d.metrics

    assert round(dit3d.metrics.evaluation_memory_bytes(662, 662, 2048) / 2**20) == 210
