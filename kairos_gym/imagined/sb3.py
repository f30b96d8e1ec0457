"""stable-baselines3 adapter: any Gymnasium 1.x ``VectorEnv`` as an SB3 ``VecEnv``.

stable-baselines3 is the optional ``rl`` extra; it is imported only when the adapter is
built, and a missing install raises :class:`~kairos_gym.errors.DependencyNotInstalled`::

    import kairos_gym
    from kairos_gym.imagined.sb3 import to_sb3
    from stable_baselines3 import PPO

    venv = to_sb3(kairos_gym.make_vec(num_envs=8, checkpoint="ckpt/lift"))
    PPO("MultiInputPolicy", venv, n_steps=64).learn(4096)

SB3's conventions, from Gymnasium's: observations are the vector env's batch (a dict of
``[num_envs, ...]`` arrays for dict spaces), ``dones = terminated | truncated``, finished
envs are reset within the step (SB3 has no next-step autoreset), and ``infos`` is a list of
per-env dicts where a finished env carries ``"terminal_observation"`` (its last real
observation) and ``"TimeLimit.truncated"`` (truncated and not terminated). ``SAME_STEP``
vector envs are used as they are (their ``final_obs``/``final_info``); ``NEXT_STEP`` and
``DISABLED`` ones are converted by resetting the finished envs right after the step with
``reset(options={"reset_mask": dones})`` (Gymnasium >= 1.1 vector envs and
:class:`~kairos_gym.imagined.vector.ImaginedVectorEnv` support it), so the results are the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from kairos_gym.errors import missing_dependency

if TYPE_CHECKING:  # pragma: no cover
    from stable_baselines3.common.vec_env import VecEnv

# SB3VecEnv is built on first access (module __getattr__), so it is not listed here.
__all__ = ["to_sb3", "unbatch_infos"]

_CLASS: type | None = None


def _vec_env_base() -> type:
    """SB3's ``VecEnv`` class; raises DependencyNotInstalled when SB3 is absent."""
    try:
        from stable_baselines3.common.vec_env import VecEnv
    except ImportError as exc:
        raise missing_dependency("stable-baselines3", "rl") from exc
    return VecEnv


def to_sb3(vector_env: VectorEnv) -> VecEnv:
    """Wrap a Gymnasium ``VectorEnv`` as an SB3 ``VecEnv`` (:class:`SB3VecEnv`).

    Raises:
        DependencyNotInstalled: stable-baselines3 is not installed (``pip install -e '.[rl]'``).
        TypeError: ``vector_env`` is not a Gymnasium VectorEnv.
    """
    return _adapter_class()(vector_env)


def __getattr__(name: str) -> Any:
    # ``from kairos_gym.imagined.sb3 import SB3VecEnv`` builds the class (importing SB3) on first use,
    # so importing this module never requires the optional dependency.
    if name == "SB3VecEnv":
        return _adapter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def unbatch_infos(infos: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's dict-of-arrays infos (``key`` + ``_key`` mask) -> a list of per-env dicts.

    Nested dicts (``final_info``) are unbatched recursively; numpy scalars become Python
    scalars. Keys without a ``_key`` mask are given to every env.
    """
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, value in infos.items():
        if key.startswith("_") and key[1:] in infos:
            continue
        mask = infos.get(f"_{key}")
        if isinstance(value, dict):
            rows = unbatch_infos(value, num_envs)
            for i in range(num_envs):
                if mask is None or mask[i]:
                    out[i][key] = rows[i]
            continue
        for i in range(num_envs):
            if mask is None:
                out[i][key] = value
            elif mask[i]:
                item = value[i]
                out[i][key] = item.item() if isinstance(item, np.generic) else item
    return out


def _adapter_class() -> type:
    global _CLASS
    base = _vec_env_base()  # checked on every call, so a missing SB3 is reported every time
    if _CLASS is None:
        _CLASS = _build_adapter(base)
    return _CLASS


def _build_adapter(base: type) -> type:
    from stable_baselines3.common import env_util

    class SB3VecEnv(base):  # type: ignore[misc, valid-type]
        """An SB3 ``VecEnv`` over a Gymnasium ``VectorEnv`` (see the module docstring).

        Args:
            vector_env: any Gymnasium 1.x vector env (``ImaginedVectorEnv``,
                ``SyncVectorEnv``, ...).

        Attributes:
            vector_env: the wrapped Gymnasium vector env.
        """

        def __init__(self, vector_env: VectorEnv) -> None:
            if not isinstance(vector_env, VectorEnv):
                raise TypeError(
                    f"SB3VecEnv wraps a gymnasium.vector.VectorEnv, got {type(vector_env).__name__}"
                )
            self.vector_env = vector_env
            mode = vector_env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
            self.autoreset_mode = mode if isinstance(mode, AutoresetMode) else AutoresetMode(mode)
            self._actions: np.ndarray | None = None
            super().__init__(
                vector_env.num_envs,
                vector_env.single_observation_space,
                vector_env.single_action_space,
            )
            self.metadata = {**vector_env.metadata, **self.metadata}

        # --- stepping ---
        def reset(self) -> Any:
            """Reset every env with the seeds of :meth:`seed` and options of ``set_options``."""
            seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
            options = self._shared_options()
            obs, infos = self.vector_env.reset(seed=seeds, options=options)
            self.reset_infos = unbatch_infos(infos, self.num_envs)
            self._reset_seeds()
            self._reset_options()
            return obs

        def step_async(self, actions: np.ndarray) -> None:
            """Store the actions ``[num_envs, A]`` for :meth:`step_wait`."""
            self._actions = np.asarray(actions)

        def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
            """Step; returns ``(obs, rewards float32 [N], dones bool [N], infos list)``."""
            if self._actions is None:
                raise RuntimeError("step_wait() called without step_async()")
            actions, self._actions = self._actions, None
            obs, rewards, terminated, truncated, infos = self.vector_env.step(actions)
            terminated = np.asarray(terminated, dtype=bool)
            truncated = np.asarray(truncated, dtype=bool)
            dones = terminated | truncated
            rows = unbatch_infos(infos, self.num_envs)
            out: list[dict[str, Any]] = []
            if self.autoreset_mode == AutoresetMode.SAME_STEP:
                for i, row in enumerate(rows):
                    if dones[i]:
                        # The step's own info sits under final_info; the top level is the reset's.
                        info = dict(row.get("final_info", {}))
                        info["terminal_observation"] = row["final_obs"]
                        self.reset_infos[i] = {
                            k: v for k, v in row.items() if k not in ("final_obs", "final_info")
                        }
                    else:
                        info = row
                    info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                    out.append(info)
            else:
                for i, row in enumerate(rows):
                    info = dict(row)
                    if dones[i]:
                        info["terminal_observation"] = _row(obs, i)
                    info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                    out.append(info)
                if dones.any():
                    obs, reset_infos = self.vector_env.reset(options={"reset_mask": dones.copy()})
                    for i, row in enumerate(unbatch_infos(reset_infos, self.num_envs)):
                        if dones[i]:
                            self.reset_infos[i] = row
            return obs, np.asarray(rewards, dtype=np.float32), dones, out

        def close(self) -> None:
            """Close the wrapped vector env."""
            self.vector_env.close()

        # --- rendering ---
        def get_images(self) -> list[np.ndarray | None]:
            """One ``[H, W, 3]`` frame per env (``render_mode="rgb_array"``), else Nones."""
            if self.render_mode != "rgb_array":
                return [None] * self.num_envs
            frames = self.vector_env.render()
            return list(frames) if frames is not None else [None] * self.num_envs

        # --- attributes and methods of the sub-environments ---
        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            """Attribute of each env (sub-env attributes when the vector env has sub-envs)."""
            index = list(self._get_indices(indices))
            envs = getattr(self.vector_env, "envs", None)
            if envs is not None:
                return [envs[i].get_wrapper_attr(attr_name) for i in index]
            if hasattr(self.vector_env, "get_attr"):
                values = self.vector_env.get_attr(attr_name)
                return [values[i] for i in index]
            value = getattr(self.vector_env, attr_name)
            return [value for _ in index]

        def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
            """Set an attribute on the envs ``indices``.

            Raises:
                ValueError: setting a subset of rows of a batched env whose rows share attributes.
            """
            index = list(self._get_indices(indices))
            envs = getattr(self.vector_env, "envs", None)
            if envs is not None:
                for i in index:
                    setattr(envs[i], attr_name, value)
            elif sorted(index) == list(range(self.num_envs)):
                if hasattr(self.vector_env, "set_attr"):
                    self.vector_env.set_attr(attr_name, value)
                else:
                    setattr(self.vector_env, attr_name, value)
            else:
                raise ValueError(
                    f"{type(self.vector_env).__name__} has no separate sub-envs: "
                    f"{attr_name!r} can only be set for all {self.num_envs} envs"
                )

        def env_method(
            self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
        ) -> list[Any]:
            """Call a method of each sub-env (vector envs with sub-envs, e.g. SyncVectorEnv).

            Raises:
                NotImplementedError: the vector env batches its rows in one object (e.g.
                    ImaginedVectorEnv); call the method on ``self.vector_env`` instead.
            """
            envs = getattr(self.vector_env, "envs", None)
            if envs is None:
                raise NotImplementedError(
                    f"{type(self.vector_env).__name__} batches its envs in one object and has "
                    f"no per-env methods; call {method_name!r} on .vector_env directly"
                )
            return [
                envs[i].get_wrapper_attr(method_name)(*method_args, **method_kwargs)
                for i in self._get_indices(indices)
            ]

        def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
            """Whether each sub-env is wrapped by ``wrapper_class`` (False for batched envs)."""
            envs = getattr(self.vector_env, "envs", None)
            index = list(self._get_indices(indices))
            if envs is None:
                return [False for _ in index]
            return [env_util.is_wrapped(envs[i], wrapper_class) for i in index]

        def _shared_options(self) -> dict[str, Any] | None:
            options = [o or {} for o in self._options]
            if all(not o for o in options):
                return None
            if any(o != options[0] for o in options[1:]):
                raise ValueError(
                    "Gymnasium vector envs take one options dict for every env; "
                    "set_options() was given different options per env"
                )
            return dict(options[0])

        def __repr__(self) -> str:
            return f"SB3VecEnv({self.vector_env!r})"

    SB3VecEnv.__module__ = __name__
    SB3VecEnv.__qualname__ = "SB3VecEnv"
    return SB3VecEnv


def _row(obs: Any, i: int) -> Any:
    """Row ``i`` of a batched observation (a dict of arrays or an array), copied."""
    if isinstance(obs, dict):
        return {k: np.array(v[i], copy=True) for k, v in obs.items()}
    return np.array(obs[i], copy=True)
