"""Suite-wide settings: one torch thread.

The models under test are tiny, where thread synchronisation costs more than it saves, and
CI machines have 2 cores that other processes share: one thread is faster and steadier.
"""

import torch

torch.set_num_threads(1)
