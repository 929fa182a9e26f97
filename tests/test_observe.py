"""Following a run: progress without a terminal, how long it will take, the machine it ran on, strict JSON,
TensorBoard, W&B keeping every row, a resumed run that continues its W&B run, and what DQN logs."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wandb_records

from rlgen import track
from rlgen.gen import gan
from rlgen.rl import dqn
from rlgen.selfsup import simclr
from rlgen.track import SECTIONS, Progress, Tracker, read_metrics


def test_progress_lines_appear_at_the_set_interval_when_stderr_is_a_file(tmp_path):
    err = tmp_path / "stderr.txt"
    argv = [sys.executable, "-m", "rlgen.rl.dqn", "--env", "CartPole", "--total-steps", "30000", "--eval-every",
            "30000", "--eval-episodes", "1", "--final-eval-episodes", "1", "--no-gif", "--wandb", "disabled",
            "--progress-every", "0.5", "--run-dir", str(tmp_path / "run")]
    with open(err, "w") as fh:
        done = subprocess.run(argv, stderr=fh, stdout=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0
    lines = [line for line in err.read_text().splitlines() if line.startswith("dqn step=")]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # one line per half second of the loop, give or take the first and the last
    assert len(lines) >= max(2, int(summary["train_seconds"] / 0.5) - 2), lines
    assert all("/30,000" in line and "step/s" in line and "elapsed" in line for line in lines)
    assert any("left" in line for line in lines) and any("episode_return=" in line for line in lines)


def test_the_estimate_says_how_long_and_names_a_shorter_recipe(monkeypatch, capsys):
    clock = [1000.0]
    monkeypatch.setattr(track.time, "time", lambda: clock[0])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    bar = Progress(10_000_000, 0, "step", "dqn", {}, every=0, hint="--preset atari100k is faster")
    bar.update(4)  # the rate counts from here
    clock[0] += 3.0
    bar.update(296)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dqn: about 27 h 46 min to go at 100 step/s (300 of 10,000,000); --preset atari100k is faster"]
    clock[0] += 100
    bar.update(1000)
    assert capsys.readouterr().err == ""  # said once
    short = Progress(1000, 0, "step", "dqn", {}, every=0, hint="never shown")
    short.update(1)
    clock[0] += 1
    short.update(400)
    assert capsys.readouterr().err == ""  # under a minute left: nothing to say


def test_every_run_records_its_machine_and_the_summary_names_cpu_and_device(tmp_path):
    s = dqn.main(dqn.Args(env="CartPole", total_steps=400, learning_starts=200, eval_every=400, eval_episodes=1,
                          final_eval_episodes=1, gif=False, wandb="disabled", run_dir=str(tmp_path / "run")))
    machine = json.loads((tmp_path / "run" / "config.json").read_text())["machine"]
    assert machine["versions"]["torch"] and machine["versions"]["rlgen"] and machine["python"]
    assert machine["cpu"] and machine["cores"] >= 1 and isinstance(machine["bf16_units"], bool)
    assert isinstance(machine["amx"], bool) and machine["device"] == "cpu" and machine["gpu"] is None
    assert s["cpu"] == machine["cpu"] and s["device"] == "cpu"


def test_metrics_and_summaries_are_strict_json(tmp_path):
    tr = Tracker(tmp_path, {"lr": 0.1}, algo="test", wandb_mode="disabled")
    with pytest.warns(UserWarning, match="'train/loss' is nan; written as null"):
        tr.log({"train/loss": float("nan"), "train/x": 1.0}, 1)
    with pytest.warns(UserWarning) as caught:
        tr.log({"eval/scores": np.array([1.0, 2.0, 3.0]), "eval/inf": math.inf}, 2)
    assert sorted(str(w.message) for w in caught) == ["metric 'eval/inf' is inf; written as null",
                                                       "metric 'eval/scores' is an array; its mean is logged"]
    tr.log({"train/loss": float("nan")}, 3)  # warned once per key
    tr.finish({"best": float("inf"), "curve": [1.0, float("nan")]})

    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    rows = [json.loads(line, parse_constant=refuse) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train/loss"] is None and rows[1]["eval/scores"] == 2.0 and rows[1]["eval/inf"] is None
    summary = json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse)
    assert summary["best"] is None and summary["curve"] == [1.0, None]


def episodes(rows):
    return [(r["step"], r["rollout/episode_return"]) for r in rows if "rollout/episode_return" in r]


def test_wandb_keeps_every_episode_of_eight_environments(tmp_path):
    dqn.main(dqn.Args(env="CartPole", num_envs=8, total_steps=1200, learning_starts=200, eval_every=1200,
                      eval_episodes=1, final_eval_episodes=1, gif=False, wandb="offline",
                      run_dir=str(tmp_path / "run")))
    local = episodes(read_metrics(tmp_path / "run"))
    steps = [step for step, _ in local]
    assert len(steps) > len(set(steps)) and len(local) > 50  # episodes that end on one step: the case in question
    (wandb_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    assert episodes(wandb_records.history(wandb_file)) == local


def test_a_resumed_run_continues_its_wandb_run_without_a_step_twice(tmp_path):
    from rlgen import checkpoint

    args = dict(env="CartPole", total_steps=1600, learning_starts=200, eval_every=800, eval_episodes=1,
                checkpoint_every=800, final_eval_episodes=1, gif=False, wandb="offline", run_dir=str(tmp_path / "run"))

    def crash(updates, norm):  # a crash well after the checkpoint at step 800, with the steps since logged
        if updates == 200:
            raise RuntimeError("the machine went away")

    with pytest.raises(RuntimeError):
        dqn.main(dqn.Args(**args), on_update=crash)
    first = checkpoint.load(tmp_path / "run")["wandb_id"]
    dqn.main(dqn.Args(resume=str(tmp_path / "run")))
    assert wandb_records.run_ids(tmp_path / "run") == [first, first]  # one W&B run, continued
    assert checkpoint.load(tmp_path / "run")["wandb_id"] == first
    parts = [wandb_records.history(f) for f in sorted((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))]
    assert max(r["step"] for r in parts[0]) > 800  # the first part holds steps the resumed run computed again
    assert episodes(parts[0] + parts[1]) == episodes(read_metrics(tmp_path / "run"))  # each once, in order
    whole = tmp_path / "whole"
    dqn.main(dqn.Args(**{**args, "run_dir": str(whole)}))
    assert episodes(read_metrics(tmp_path / "run")) == episodes(read_metrics(whole))


def tensorboard_scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / track.TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc, {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def jsonl_scalars(run_dir):
    out = {}
    for row in read_metrics(run_dir):
        for key, value in row.items():
            if key not in ("step", "time") and isinstance(value, (int, float)):
                out.setdefault(key, []).append((row["step"], float(value)))
    return out


@pytest.mark.parametrize("command", ["dqn", "gan", "simclr"])
def test_tensorboard_holds_the_scalars_of_metrics_jsonl_and_the_pictures(tmp_path, command):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    common = dict(run_dir=str(run), wandb="disabled", tensorboard=True)
    if command == "dqn":
        dqn.main(dqn.Args(env="CartPole", total_steps=1000, learning_starts=200, eval_every=500, eval_episodes=1,
                          final_eval_episodes=1, gif=False, log_every=20, **common))
        pictures = {"learning_curve"}
    elif command == "gan":
        gan.main(gan.Args(data="mnist5k", arch="dcgan", image_size=16, width=8, batch_size=16, fid_samples=0,
                          device="cpu", log_every=2, total_steps=6, sample_every=3, **common))
        pictures = {"samples_final", "losses"}
    else:
        simclr.main(simclr.Args(data="mnist5k", total_steps=20, batch_size=32, log_every=5, knn_every=10,
                                checkpoint_every=0, threads=1, **common))
        pictures = {"loss_curve"}
    acc, scalars = tensorboard_scalars(run)
    expected = jsonl_scalars(run)
    assert expected and scalars.keys() == expected.keys()
    assert all(key.split("/", 1)[0] in SECTIONS for key in expected)  # one naming scheme
    for tag, events in scalars.items():
        assert [s for s, _ in events] == [s for s, _ in expected[tag]], tag
        np.testing.assert_allclose([v for _, v in events], [v for _, v in expected[tag]], rtol=1e-6, err_msg=tag)
    assert pictures <= set(acc.Tags()["images"])


def test_tensorboard_without_the_extra_is_one_line(tmp_path, bad_input, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    line = bad_input(dqn.main, dqn.Args, ["--tensorboard", "--run-dir", str(tmp_path / "x")], "--tensorboard")
    assert "pip install 'rlgen[tensorboard]'" in line
    assert not (tmp_path / "x").exists()


def test_dqn_logs_q_values_gradient_norm_learning_rate_epsilon_and_rate(tmp_path):
    dqn.main(dqn.Args(env="CartPole", total_steps=1600, learning_starts=200, eval_every=1600, eval_episodes=1,
                      final_eval_episodes=1, gif=False, log_every=20, wandb="disabled", run_dir=str(tmp_path / "run")))
    rows = [r for r in read_metrics(tmp_path / "run") if "train/loss" in r]
    assert len(rows) >= 5
    for r in rows:
        assert np.isfinite(r["train/q_mean"]) and r["train/grad_norm"] > 0 and 0 <= r["train/lr"] <= 1e-3
        assert 0 < r["rollout/epsilon"] <= 1 and r["time/steps_per_second"] > 0
    assert rows[-1]["train/lr"] < rows[0]["train/lr"]  # classic control's learning rate decays linearly
    # Q-values start near 0 and climb toward the discounted return of a pole that stays up (rewards of 1)
    assert rows[-1]["train/q_mean"] > rows[0]["train/q_mean"] + 1
    # the Atari 100k preset does not clip: the norm is read from the gradients
    run = tmp_path / "atari"
    dqn.main(dqn.Args(env="Boxing", preset="atari100k", total_steps=280, learning_starts=250, buffer_size=1000,
                      eval_every=280, eval_episodes=1, final_eval_episodes=1, max_episode_steps=100, log_every=10,
                      gif=False, wandb="disabled", run_dir=str(run)))
    rows = [r for r in read_metrics(run) if "train/loss" in r]
    assert rows and all(r["train/grad_norm"] > 0 and np.isfinite(r["train/q_mean"]) for r in rows)


def test_bad_progress_and_log_cadence_is_one_line(tmp_path, bad_input):
    for argv, message in ((["--log-every", "0"], "--log-every 0"), (["--progress-every", "-1"], "--progress-every")):
        bad_input(dqn.main, dqn.Args, [*argv, "--run-dir", str(tmp_path / "x")], message)
    assert not (tmp_path / "x").exists()


def test_the_docs_logging_table_is_the_one_the_records_give(tmp_path):
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("bench_logging", root / "experiments" / "bench_logging.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    page = tmp_path / "metrics.md"
    docs = (root / "docs" / "metrics.md").read_text()
    page.write_text(docs)
    records = sorted(bench.RESULTS.glob("logging*.json"))
    assert records
    bench.write_docs(page, [json.loads(p.read_text()) for p in records])
    assert page.read_text() == docs, "docs/metrics.md: run python experiments/bench_logging.py --docs docs/metrics.md"
    for record in records:  # every row of every record, in the table
        for r in json.loads(record.read_text())["runs"]:
            assert f"| {r['task']} | {r['wandb']} | {r['ms_per_step']['never']:.3f} |" in docs
