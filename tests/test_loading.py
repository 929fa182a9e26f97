"""rlgen.load gives back what a run trained: agents that act and evaluate, generators, encoders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import rlgen
from rlgen.errors import UsageError
from rlgen.rl import dqn, qlearning, reinforce

CARTPOLE = dict(env="CartPole", total_steps=3000, learning_starts=500, eval_every=1000, eval_episodes=2,
                final_eval_episodes=5, gif=False, wandb="disabled")


def summary_of(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("dqn") / "run"
    dqn.main(dqn.Args(run_dir=str(run_dir), **CARTPOLE))
    return run_dir


def test_a_dqn_agent_reproduces_its_final_evaluation_and_acts_as_sb3_expects(cartpole_run):
    s = summary_of(cartpole_run)
    agent = rlgen.load(cartpole_run)
    returns = agent.evaluate()
    assert len(returns) == s["eval_episodes"] == 5
    assert float(returns.mean()) == s["final_eval_return_mean"] and float(returns.std()) == s["final_eval_return_std"]
    env = agent.make_env()
    obs, _ = env.reset(seed=0)
    action, state = agent.predict(obs, deterministic=True)
    assert state is None and np.ndim(action) == 0 and env.action_space.contains(int(action))
    batch, _ = agent.predict(np.stack([obs, obs, obs]))
    assert batch.shape == (3,) and (batch == action).all()
    with pytest.raises(UsageError, match="takes"):
        agent.predict(np.zeros(7))
    env.close()
    # the checkpoint file itself loads the same agent
    assert (rlgen.load(cartpole_run / "checkpoint.pt").evaluate(3) == agent.evaluate(3)).all()


def test_sb3_evaluate_policy_runs_on_a_loaded_agent(cartpole_run):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.evaluation import evaluate_policy

    agent = rlgen.load(cartpole_run)
    mean, std = evaluate_policy(agent, agent.make_env(), n_eval_episodes=3, deterministic=True, warn=False)
    assert np.isfinite(mean) and mean > 0


def test_best_loads_the_best_evaluations_weights(cartpole_run):
    best = torch.load(cartpole_run / "best.pt", weights_only=True)
    agent = rlgen.load(cartpole_run, which="best")
    state = agent.net.state_dict()
    assert all(torch.equal(state[k], best["q_net"][k]) for k in state)
    assert agent.evaluate(episodes=best["args"]["eval_episodes"]).mean() == pytest.approx(best["eval_return"])


def test_a_tiny_atari_dqn_reproduces_its_final_evaluation(tmp_path):
    run_dir = tmp_path / "run"
    s = dqn.main(dqn.Args(env="Breakout", total_steps=400, learning_starts=200, buffer_size=400, batch_size=8,
                          num_envs=2, eval_every=400, eval_episodes=1, final_eval_episodes=2, max_episode_steps=300,
                          gif=False, threads=1, wandb="disabled", run_dir=str(run_dir)))
    agent = rlgen.load(run_dir)
    returns = agent.evaluate()
    assert float(returns.mean()) == s["final_eval_return_mean"] and len(returns) == 2
    env = agent.make_env()
    obs, _ = env.reset(seed=1)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    action, _ = agent.predict(obs)
    assert 0 <= int(action) < env.action_space.n
    env.close()
    assert agent.human_normalized(s["final_eval_return_mean"]) == pytest.approx(s["human_normalized_score"])


def test_reinforce_and_qlearning_agents_reproduce_their_final_evaluation(tmp_path):
    rf_dir = tmp_path / "rf"
    s = reinforce.main(reinforce.Args(env="CartPole", episodes=12, batch_episodes=2, eval_episodes=3, gif=False,
                                      stop_on_solve=False, device="cpu", wandb="disabled", run_dir=str(rf_dir)))
    agent = rlgen.load(rf_dir)
    returns = agent.evaluate()
    assert (float(returns.mean()), float(returns.std())) == (s["eval_return_mean"], s["eval_return_std"])
    obs, _ = agent.make_env().reset(seed=0)
    assert agent.predict(obs, deterministic=False)[0] in (0, 1)

    ql_dir = tmp_path / "ql"
    s = qlearning.main(qlearning.Args(env="FrozenLake", slippery=False, episodes=400, eval_episodes=20, gif=False,
                                      wandb="disabled", run_dir=str(ql_dir)))
    agent = rlgen.load(ql_dir)
    returns = agent.evaluate()
    assert float(returns.mean()) == s["eval_return_mean"] and len(returns) == 20
    assert int(agent.predict(0)[0]) == int(np.load(ql_dir / "q_table.npz")["policy"][0])


def test_loading_what_is_not_there_is_one_clear_error(tmp_path, cartpole_run):
    with pytest.raises(UsageError, match="holds no rlgen run"):
        rlgen.load(tmp_path)
    with pytest.raises(UsageError, match="not one of last, best"):
        rlgen.load(cartpole_run, which="first")
    ql_dir = tmp_path / "ql"
    qlearning.main(qlearning.Args(env="FrozenLake", slippery=False, episodes=50, eval_episodes=2, gif=False,
                                  wandb="disabled", run_dir=str(ql_dir)))
    with pytest.raises(UsageError, match="no best.pt"):
        rlgen.load(ql_dir, which="best")
    with pytest.raises(UsageError, match="no encoder_record"):
        rlgen.load(ql_dir, kind="encoder")
    with pytest.raises(UsageError, match="cannot sample"):
        rlgen.load(ql_dir, kind="generator")


# A DQN started from another run's encoder records that encoder, so agent and encoder load again.
AGENT = dict(env="Boxing", preset="atari100k", total_steps=280, learning_starts=250, buffer_size=1_000,
             final_eval_episodes=1, eval_every=280, eval_episodes=1, max_episode_steps=150, gif=False,
             freeze_encoder=True, wandb="disabled")


@pytest.mark.parametrize("source", ["simclr_convnet", "vae"])
def test_a_dqn_started_from_an_encoder_loads_again_with_the_same_features(source, tmp_path, monkeypatch):
    from rlgen.data import atari_frames
    from rlgen.encoders import load_encoder
    from rlgen.gen import vae
    from rlgen.selfsup import simclr

    monkeypatch.setattr(atari_frames, "DEFAULT_N", {"train": 300, "test": 100})  # a small collection
    pre = tmp_path / source
    if source == "vae":
        vae.main(vae.Args(data="atari-stacks:boxing", arch="conv", epochs=1, iwae_k=0, batch_size=64,
                          run_dir=str(pre), wandb="disabled"))
    else:
        simclr.main(simclr.Args(data="atari-stacks:boxing", frames=300, backbone="convnet", batch_size=16,
                                total_steps=3, run_dir=str(pre), wandb="disabled", amp="off"))
    agent_dir = tmp_path / "agent"
    s = dqn.main(dqn.Args(**AGENT, encoder=str(pre), run_dir=str(agent_dir)))
    before = load_encoder(pre)
    after = rlgen.load(agent_dir, kind="encoder")
    assert after.scaling == before.scaling == ("signed" if source == "vae" else "unit")
    frames = torch.randint(0, 256, (6, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(after.encode(frames), before.encode(frames))  # frozen: the trunk is the encoder
    agent = rlgen.load(agent_dir)
    assert float(agent.evaluate().mean()) == s["final_eval_return_mean"]
