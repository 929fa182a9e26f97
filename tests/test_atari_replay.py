"""FrameReplay against a naive store of full stacks (hypothesis), n-step by hand, checkpoints, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlgen.errors import UsageError
from rlgen.rl.atari_replay import FrameReplay, check_replay_args

torch.set_num_threads(1)
SHAPE = (2, 3)


class NaiveWorld:
    """Fake vector env plus a naive store: every transition kept with its full obs and next_obs stacks.

    Frame ids are unique and written into the first two pixels, so a stack's newest frame names its
    transition. It also tracks the slot positions the replay's documented layout assigns (one per frame,
    a lost life's final frame shared with the next episode) to know which transitions must be samplable.
    """

    def __init__(self, num_envs: int, stack: int, rng: np.random.Generator) -> None:
        self.n, self.stack, self.rng = num_envs, stack, rng
        self.next_id = 0
        self.episodes = [[self.frame()] for _ in range(num_envs)]  # frames of each current episode
        self.pos = [0] * num_envs  # absolute slot of each env's newest frame
        self.ages = [0] * num_envs
        self.trans: list[list[dict]] = [[] for _ in range(num_envs)]  # per env, in order

    def frame(self) -> np.ndarray:
        f = self.rng.integers(0, 256, size=SHAPE, dtype=np.uint8)
        f.flat[0], f.flat[1] = self.next_id % 256, self.next_id // 256
        self.next_id += 1
        return f

    def stack_of(self, frames: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((self.stack, *SHAPE), dtype=np.uint8)
        last = frames[-self.stack:]
        out[self.stack - len(last):] = last
        return out

    def obs(self) -> np.ndarray:
        return np.stack([self.stack_of(ep) for ep in self.episodes])

    def step(self, events: list[str]) -> tuple:
        """events per env: 'c' continue, 't' game over, 'u' truncation, 'l' lost life (same frame goes on)."""
        actions = self.rng.integers(0, 6, size=self.n)
        rewards = self.rng.integers(-2, 4, size=self.n).astype(np.float32)
        term = np.array([e in "tl" for e in events])
        trunc = np.array([e == "u" for e in events])
        next_obs, new_obs = [], []
        for i, ev in enumerate(events):
            before = self.stack_of(self.episodes[i])
            succ = self.frame()
            self.episodes[i].append(succ)
            after = self.stack_of(self.episodes[i])
            self.trans[i].append({"obs": before, "action": actions[i], "reward": rewards[i], "next": after,
                                  "term": term[i], "trunc": trunc[i], "pos": self.pos[i], "age": self.ages[i],
                                  "episode_end": ev != "c"})
            self.pos[i] += 1
            self.ages[i] = min(self.ages[i] + 1, self.stack - 1)
            next_obs.append(after)
            if ev == "l":
                self.episodes[i] = [succ]
                self.ages[i] = 0
            elif ev in "tu":
                self.episodes[i] = [self.frame()]
                self.pos[i] += 1
                self.ages[i] = 0
            new_obs.append(self.stack_of(self.episodes[i]))
        return actions, rewards, term, trunc, np.stack(next_obs), np.stack(new_obs)

    def expected(self, n_step: int, gamma: float, per_env: int) -> dict[tuple[int, int], dict]:
        """(env, id of obs's newest frame) -> n-step transition, for every transition that must be samplable."""
        out = {}
        for e, ts in enumerate(self.trans):
            head = self.pos[e] + 1
            for k, t in enumerate(ts):
                if t["pos"] - t["age"] < head - per_env:
                    continue  # its stack's oldest frame was overwritten
                ret, m, last = 0.0, 0, None
                for j in range(n_step):
                    if k + j >= len(ts):
                        break
                    last = ts[k + j]
                    ret += gamma ** j * float(last["reward"])
                    m = j + 1
                    if last["episode_end"]:
                        break
                if m < n_step and not (last and last["episode_end"]):
                    continue  # the n steps are not all there yet
                frame_id = int(t["obs"][-1].flat[0]) + 256 * int(t["obs"][-1].flat[1])
                out[(e, frame_id)] = {"obs": t["obs"], "action": t["action"], "reward": ret, "next": last["next"],
                                      "term": last["term"], "trunc": last["trunc"], "steps": m,
                                      "discount": 0.0 if last["term"] else gamma ** m}
        return out


def check_batch(batch, envs: np.ndarray, expected: dict, gamma: float) -> set:
    seen = set()
    for b in range(len(envs)):
        newest = batch.obs[b, -1].numpy()
        key = (int(envs[b]), int(newest.flat[0]) + 256 * int(newest.flat[1]))
        assert key in expected, f"sampled transition {key} is not one the naive store can give"
        want = expected[key]
        np.testing.assert_array_equal(batch.obs[b].numpy(), want["obs"])
        np.testing.assert_array_equal(batch.next_obs[b].numpy(), want["next"])
        assert int(batch.actions[b]) == want["action"]
        assert float(batch.rewards[b]) == pytest.approx(want["reward"], rel=1e-6, abs=1e-6)
        assert bool(batch.terminated[b]) == want["term"] and bool(batch.truncated[b]) == want["trunc"]
        assert int(batch.steps[b]) == want["steps"]
        assert float(batch.discounts[b]) == pytest.approx(want["discount"], rel=1e-6)
        seen.add(key)
    return seen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), num_envs=st.integers(1, 3), stack=st.sampled_from([1, 2, 4]), n_step=st.integers(1, 3),
       extra=st.integers(0, 10), seed=st.integers(0, 2**16))
def test_samples_equal_naive_full_stack_store(data, num_envs, stack, n_step, extra, seed):
    per_env = stack + n_step + extra
    gamma = 0.9
    rng = np.random.default_rng(seed)
    world = NaiveWorld(num_envs, stack, rng)
    replay = FrameReplay(per_env * num_envs, num_envs, SHAPE, stack, n_step, gamma)
    replay.start(world.obs())
    steps = data.draw(st.lists(st.lists(st.sampled_from("cccctul"), min_size=num_envs, max_size=num_envs),
                               max_size=40))
    for events in steps:
        actions, rewards, term, trunc, next_obs, new_obs = world.step(events)
        replay.add(actions, rewards, term, trunc, next_obs, new_obs)
    expected = world.expected(n_step, gamma, replay.per_env)
    envs, pos = replay._valid_positions()
    assert len(envs) == len(expected)
    if len(envs) == 0:
        with pytest.raises(RuntimeError):
            replay.sample(1, np.random.default_rng(0))
        return
    assert check_batch(replay._gather(envs, pos), envs, expected, gamma) == set(expected)
    batch = replay.sample(min(32, replay.capacity), np.random.default_rng(seed))
    sampled_envs = np.array([next(e for (e, i) in expected if i == int(o[-1].flat[0]) + 256 * int(o[-1].flat[1]))
                             for o in batch.obs.numpy()])
    check_batch(batch, sampled_envs, expected, gamma)
    stored = sum(len(t) for t in world.trans)
    assert len(replay) <= min(stored, replay.capacity)


def _episode(replay: FrameReplay, rewards: list[float], end: str) -> list[np.ndarray]:
    frames = [np.full((1, *SHAPE), 10 * k, dtype=np.uint8) for k in range(len(rewards) + 2)]
    replay.start(frames[0])
    for k, r in enumerate(rewards):
        last = k == len(rewards) - 1
        replay.add([k], [r], [last and end == "term"], [last and end == "trunc"], frames[k + 1], frames[k + 2])
    return frames


def test_n_step_returns_by_hand():
    replay = FrameReplay(16, 1, SHAPE, stack=2, n_step=3, gamma=0.5)
    frames = _episode(replay, [1.0, 2.0, 4.0, 8.0], end="term")
    envs, pos = replay._valid_positions()
    assert pos.tolist() == [0, 1, 2, 3]
    b = replay._gather(envs, pos)
    assert b.rewards.tolist() == [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4 + 0.25 * 8, 4 + 0.5 * 8, 8]
    assert b.steps.tolist() == [3, 3, 2, 1]
    assert b.discounts.tolist() == [0.125, 0.0, 0.0, 0.0]
    assert b.terminated.tolist() == [False, True, True, True]
    # next obs of transition 0 is the stack seen 3 steps later: frames 2 and 3
    np.testing.assert_array_equal(b.next_obs[0].numpy(), np.concatenate([frames[2], frames[3]]))
    # the first stack of an episode has zeros before its first frame
    np.testing.assert_array_equal(b.obs[0, 0].numpy(), np.zeros(SHAPE, np.uint8))


def test_truncation_bootstraps_and_clipping():
    replay = FrameReplay(16, 1, SHAPE, stack=2, n_step=2, gamma=0.5, clip_rewards=True)
    _episode(replay, [3.0, -7.0, 0.0], end="trunc")
    b = replay._gather(*replay._valid_positions())
    assert b.rewards.tolist() == [1 - 0.5, -1, 0]
    assert b.truncated.tolist() == [False, True, True] and not b.terminated.any()
    assert b.discounts.tolist() == [0.25, 0.25, 0.5]


def test_pending_n_steps_are_not_sampled():
    replay = FrameReplay(16, 1, SHAPE, stack=4, n_step=3, gamma=0.9)
    replay.start(np.zeros((1, *SHAPE), np.uint8))
    for k in range(4):
        replay.add([0], [1.0], [False], [False], np.full((1, *SHAPE), k + 1, np.uint8))
    assert replay._valid_positions()[1].tolist() == [0, 1]
    assert len(replay) == 4


def test_state_dict_round_trip():
    rng = np.random.default_rng(0)
    world = NaiveWorld(2, 4, rng)
    replay = FrameReplay(40, 2, SHAPE, 4, n_step=2)
    replay.start(world.obs())
    for _ in range(30):
        replay.add(*world.step(list(rng.choice(list("ccccctul"), size=2))))
    buf = io.BytesIO()
    torch.save(replay.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    other = FrameReplay(40, 2, SHAPE, 4, n_step=2)
    other.load_state_dict(state)
    assert len(other) == len(replay)
    a, b = replay.sample(16, np.random.default_rng(1)), other.sample(16, np.random.default_rng(1))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    step = world.step(["c", "t"])
    replay.add(*step)
    other.add(*step)
    assert torch.equal(replay.state_dict()["frames"], other.state_dict()["frames"])
    with pytest.raises(UsageError, match="capacity"):
        FrameReplay(48, 2, SHAPE, 4).load_state_dict(state)


@pytest.mark.parametrize("num_envs", [1, 3])
def test_state_dict_keeps_only_written_slots(num_envs):
    rng = np.random.default_rng(0)
    world = NaiveWorld(num_envs, 4, rng)
    replay = FrameReplay(3_000, num_envs, SHAPE, 4, n_step=3)
    replay.start(world.obs())
    for _ in range(25):
        replay.add(*world.step(list(rng.choice(list("ccccctul"), size=num_envs))))
    state = replay.state_dict()
    written = int(np.minimum(replay._head, replay.per_env).sum())
    assert written < replay.capacity and all(len(state[k]) == written for k in ("frames", "age", "actions"))
    buf, whole = io.BytesIO(), io.BytesIO()
    torch.save(state, buf)
    torch.save(replay._t, whole)
    assert buf.tell() < whole.tell() / 4  # not the whole capacity on disk
    buf.seek(0)
    other = FrameReplay(3_000, num_envs, SHAPE, 4, n_step=3)
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert len(other) == len(replay)
    a, b = replay.sample(32, np.random.default_rng(1)), other.sample(32, np.random.default_rng(1))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    for _ in range(40):  # both go on alike
        step = world.step(list(rng.choice(list("ccccctul"), size=num_envs)))
        replay.add(*step)
        other.add(*step)
    a, b = replay.sample(32, np.random.default_rng(2)), other.sample(32, np.random.default_rng(2))
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_bytes_per_transition():
    replay = FrameReplay(10_000, 4)
    assert replay.nbytes / replay.capacity <= 7_200


@pytest.mark.parametrize("kwargs, match", [
    ({"capacity": 16, "num_envs": 1, "batch_size": 32}, "smaller than --batch-size 32"),
    ({"capacity": 100, "num_envs": 0}, "--num-envs 0"),
    ({"capacity": 0, "num_envs": 1}, "capacity 0"),
    ({"capacity": 10, "num_envs": 4}, "per environment"),
    ({"capacity": 100, "num_envs": 1, "n_step": 0}, "--n-step 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(UsageError, match=match) as err:
        FrameReplay(**kwargs)
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError):
        check_replay_args(**{k: v for k, v in kwargs.items()})


def test_sample_larger_than_capacity_and_add_before_start():
    replay = FrameReplay(16, 1, SHAPE)
    with pytest.raises(UsageError, match="batch size 17"):
        replay.sample(17)
    with pytest.raises(RuntimeError, match="start"):
        replay.add([0], [0.0], [False], [False], np.zeros((1, *SHAPE), np.uint8))
