"""The Kairos-architecture world model: config, denoiser, memory, codec, sampler, checkpoints."""

from kairos_gym.model.codec import Codec, ConvCodec
from kairos_gym.model.config import WorldModelConfig
from kairos_gym.model.dit import KairosDiT
from kairos_gym.model.sampler import SamplerSettings, flow_sigmas
from kairos_gym.model.state import WorldState
from kairos_gym.model.world_model import WorldModel

__all__ = ["Codec", "ConvCodec", "KairosDiT", "SamplerSettings", "WorldModel", "WorldModelConfig",
           "WorldState", "flow_sigmas"]
