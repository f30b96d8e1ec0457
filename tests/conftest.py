"""Suite-wide settings: one torch thread, headless rendering, and the ``fuzz`` marker.

The models under test are tiny, where thread synchronisation costs more than it saves, and
CI machines have 2 cores that other processes share: one thread is faster and steadier.
``KAIROS_LIBERO_ASSETS`` defaults to ``../shared/libero/assets`` when that folder exists.
The property-based tests carry the ``fuzz`` marker (``scripts/fuzz.sh`` runs them with a
long budget; see ``tests/fuzz_helpers.py``).
EGL is the rendering default before any test runs: a test that imports a simulator itself
(``pytest.importorskip("robosuite")``) before any env module would otherwise load mujoco
without it, and a later env's renderer fails to make its context ("Default framebuffer is not
complete") when the file runs alone.
"""

import os
from pathlib import Path

import torch

import kairos_gym.envs.rendering  # noqa: F401  (sets MUJOCO_GL=egl unless the caller chose)

torch.set_num_threads(1)

# LIBERO's meshes and textures: the offline copy beside the checkout, unless the caller
# chose one (envs/libero_package.py reads KAIROS_LIBERO_ASSETS).
_LIBERO_ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "libero" / "assets"
if _LIBERO_ASSETS.is_dir():
    os.environ.setdefault("KAIROS_LIBERO_ASSETS", str(_LIBERO_ASSETS))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fuzz: property-based (Hypothesis) tests; scripts/fuzz.sh runs them longer"
    )
