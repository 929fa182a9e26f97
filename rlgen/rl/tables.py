"""Environments as tables for tabular Q-learning: an index per state, stepped with the run's generator.

Every table environment has ``reset(rng) -> state`` and ``step(action, u) -> (next state, reward,
terminated)``, where ``u`` is the run's uniform draw for the transition. :class:`TableEnv` steps a toy-text
environment (FrozenLake, Taxi, CliffWalking) from its published transition table ``P``, drawing outcomes exactly
as gymnasium's ``categorical_sample`` does, so the process is the same Markov chain as ``env.step`` without
the wrappers' per-step cost; :class:`CartPoleTable` steps CartPole with gymnasium's Euler equations in plain
floats (``tests/test_qlearning.py`` checks it against ``env.step`` bit for bit); :class:`GymTable` steps any
other environment through gymnasium. A box of observations becomes one index through :class:`Discretiser`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from rlgen.errors import UsageError


def bin_edges(low: float, high: float, n: int) -> np.ndarray:
    """The ``n − 1`` interior edges that cut ``[low, high]`` into ``n`` equal bins."""
    return np.linspace(low, high, n + 1)[1:-1]


class Discretiser:
    """Maps a box observation to one table index: equal-width bins per dimension, row-major.

    Values below ``low`` fall in the first bin and above ``high`` in the last, so every
    observation has a cell. A dimension with one bin is ignored (CartPole's 1,1,6,12).
    Bin ``i`` of a dimension is ``[edges[i-1], edges[i])``, as :func:`numpy.digitize` counts.
    """

    def __init__(self, bins: Sequence[int], lows: Sequence[float], highs: Sequence[float]) -> None:
        self.bins = [int(b) for b in bins]
        self.lows = [float(x) for x in lows]
        self.highs = [float(x) for x in highs]
        self.edges = [bin_edges(lo, hi, n) for lo, hi, n in zip(self.lows, self.highs, self.bins)]
        self.n_states = int(np.prod(self.bins))
        self._scale = [n / (hi - lo) for lo, hi, n in zip(self.lows, self.highs, self.bins)]
        strides, k = [], 1
        for n in reversed(self.bins):
            strides.append(k)
            k *= n
        self._dims = [(i, self.lows[i], self._scale[i], self.bins[i], stride)
                      for i, stride in zip(range(len(self.bins)), reversed(strides)) if self.bins[i] > 1]

    def cell(self, obs: Sequence[float]) -> tuple[int, ...]:
        """Bin index per dimension."""
        return tuple(int(np.digitize(x, e)) for x, e in zip(obs, self.edges))

    def __call__(self, obs: Sequence[float]) -> int:
        """Row-major table index of ``obs`` (plain-float arithmetic: this runs every step)."""
        index = 0
        for i, lo, scale, n, stride in self._dims:
            b = int((obs[i] - lo) * scale)
            index += stride * (0 if b < 0 else n - 1 if b >= n else b)
        return index


def parse_bins(bins: str, bounds: str | None, space: gym.spaces.Box) -> Discretiser:
    """Build a :class:`Discretiser` from ``--bins 1,1,6,12`` and ``--bounds lo:hi,...``; UsageError if malformed."""
    dims = int(np.prod(space.shape))
    try:
        counts = [int(x) for x in bins.split(",")]
    except ValueError:
        raise UsageError(f"--bins {bins!r}: expected comma-separated integers such as 1,1,6,12") from None
    if len(counts) != dims or min(counts) < 1:
        raise UsageError(f"--bins {bins!r}: need {dims} positive integers, one per observation dimension")
    if bounds:
        try:
            pairs = [tuple(float(v) for v in part.split(":")) for part in bounds.split(",")]
        except ValueError:
            raise UsageError(f"--bounds {bounds!r}: expected lo:hi pairs such as -2.4:2.4,-3:3") from None
        if len(pairs) != dims or any(len(p) != 2 or not p[0] < p[1] for p in pairs):
            raise UsageError(f"--bounds {bounds!r}: need {dims} lo:hi pairs with lo < hi")
        lows, highs = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        lows, highs = space.low.reshape(-1).tolist(), space.high.reshape(-1).tolist()
        for i, (lo, hi, n) in enumerate(zip(lows, highs, counts)):
            if n > 1 and not (math.isfinite(lo) and math.isfinite(hi)):
                raise UsageError(f"observation dimension {i} is unbounded ({lo}, {hi}): give --bounds lo:hi,...")
    return Discretiser(counts, lows, highs)



class TableEnv:
    """A toy-text environment stepped from its transition table ``P`` with the run's generator."""

    def __init__(self, P: dict, initial: np.ndarray, n_states: int, n_actions: int) -> None:
        def cumulative(probs: Sequence[float]) -> list[float]:
            c = np.cumsum(probs).tolist()
            c[-1] = math.inf  # a uniform draw always lands somewhere despite rounding
            return c

        self.cum = [[cumulative([t[0] for t in P[s][a]]) for a in range(n_actions)] for s in range(n_states)]
        self.out = [[[(t[1], float(t[2]), bool(t[3])) for t in P[s][a]] for a in range(n_actions)]
                    for s in range(n_states)]
        self.initial = cumulative(initial)
        self.n_states, self.n_actions = n_states, n_actions
        self.s = 0

    def reset(self, rng: np.random.Generator) -> int:
        u, i = rng.random(), 0
        while u >= self.initial[i]:
            i += 1
        self.s = i
        return i

    def step(self, a: int, u: float) -> tuple[int, float, bool]:
        cum, i = self.cum[self.s][a], 0
        while u >= cum[i]:  # gymnasium's categorical_sample: first outcome whose cumulative p exceeds u
            i += 1
        s2, r, done = self.out[self.s][a][i]
        self.s = s2
        return s2, r, done


class CartPoleTable:
    """CartPole-v1's Euler dynamics in plain floats (the operations of gymnasium's ``step``, in order)."""

    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total_mass = masspole + masscart
    polemass_length = masspole * length
    theta_limit, x_limit = 12 * 2 * math.pi / 360, 2.4

    def __init__(self, discretiser: Discretiser) -> None:
        self.discretise = discretiser
        self.n_states, self.n_actions = discretiser.n_states, 2
        self.state = (0.0, 0.0, 0.0, 0.0)

    def reset(self, rng: np.random.Generator) -> int:
        self.state = tuple(rng.uniform(-0.05, 0.05, size=4).tolist())
        return self.discretise(self.state)

    def step(self, a: int, u: float) -> tuple[int, float, bool]:
        x, x_dot, theta, theta_dot = self.state
        force = self.force_mag if a == 1 else -self.force_mag
        costheta, sintheta = math.cos(theta), math.sin(theta)
        temp = (force + self.polemass_length * (theta_dot * theta_dot) * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * (costheta * costheta) / self.total_mass))
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        x, x_dot = x + self.tau * x_dot, x_dot + self.tau * xacc
        theta, theta_dot = theta + self.tau * theta_dot, theta_dot + self.tau * thetaacc
        self.state = (x, x_dot, theta, theta_dot)
        done = x < -self.x_limit or x > self.x_limit or theta < -self.theta_limit or theta > self.theta_limit
        return self.discretise(self.state), 1.0, done


class GymTable:
    """Any other environment, stepped through gymnasium (reset seeds drawn from the run's generator)."""

    def __init__(self, env: gym.Env, discretiser: Discretiser | None) -> None:
        self.env = env
        self.discretise = discretiser or int
        self.n_states = discretiser.n_states if discretiser else int(env.observation_space.n)
        self.n_actions = int(env.action_space.n)

    def reset(self, rng: np.random.Generator) -> int:
        obs, _ = self.env.reset(seed=int(rng.integers(2**31)))
        return self.discretise(obs)

    def step(self, a: int, u: float) -> tuple[int, float, bool]:
        obs, r, terminated, _, _ = self.env.step(a)
        return self.discretise(obs), float(r), bool(terminated)
