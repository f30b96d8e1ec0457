"""``kairos-gym play``: drive the imagined world by hand in a browser, beside the real one.

A local web page (served by :class:`~kairos_gym.play.server.PlayServer` with the
``websockets`` library, the ``[play]`` extra) shows the imagined camera, large, and with
``real=True`` the real simulator beside it from the same reset, stepping together. Keyboard
and on-screen controls map to the action space; the page draws the predicted reward and
success live (and the per-step PSNR against the real frame), forks and rewinds episodes,
and records what was played into episode files and an mp4.

Modules:

- :mod:`~kairos_gym.play.protocol`: the messages and their validation, the key map;
- :mod:`~kairos_gym.play.session`: one connection's envs, snapshots and recording;
- :mod:`~kairos_gym.play.recorder`: episode files and videos of played episodes;
- :mod:`~kairos_gym.play.server`: HTTP for the page, WebSocket for the sessions
  (imports ``websockets``; import it from there).
"""

from kairos_gym.play.protocol import ProtocolError, parse_message
from kairos_gym.play.recorder import Recorder
from kairos_gym.play.session import PlaySession, Refused

__all__ = ["PlaySession", "ProtocolError", "Recorder", "Refused", "parse_message"]
