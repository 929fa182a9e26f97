"""Does a change move any number? Runs every training command on a small fixed configuration and prints the
numbers of its summary (clocks left out) as JSON, to compare two revisions:

    git worktree add /tmp/base REV
    PYTHONPATH=/tmp/base python experiments/same_numbers.py run > old.json
    PYTHONPATH=. python experiments/same_numbers.py run > new.json
    python experiments/same_numbers.py --diff old.json new.json

Flags renamed since earlier revisions (the GAN's --steps, PixelCNN's --channels, stdim's boolean --amp) are
given by their old names where the revision run has those. Runs on one thread; the same CPU gives the same
numbers.
"""
import dataclasses
import importlib
import json
import os
import sys
import tempfile

os.environ["WANDB_MODE"] = "disabled"
import torch  # noqa: E402

torch.set_num_threads(1)
C = {
    "rlgen.rl.dqn": dict(env="CartPole", learning_starts=100, eval_every=200, eval_episodes=1, final_eval_episodes=5,
                         checkpoint_every=200, batch_size=32, gif=False, total_steps=3000),
    "rlgen.rl.qlearning": dict(env="FrozenLake", slippery=False, checkpoint_every=200, eval_episodes=20, gif=False,
                               episodes=900),
    "rlgen.rl.reinforce": dict(env="CartPole", batch_episodes=2, checkpoint_every=4, eval_episodes=2, gif=False,
                               device="cpu", episodes=14),
    "rlgen.gen.vae": dict(data="mnist5k", arch="mlp", hidden="64", latent_dim=4, batch_size=200, iwae_k=50,
                          iwae_images=100, eval_every=1, kl_warmup=0, checkpoint_every=1, epochs=3),
    "rlgen.gen.gan": dict(data="mnist5k", arch="dcgan", image_size=16, width=8, batch_size=16, fid_samples=0,
                          device="cpu", log_every=2, checkpoint_every=2, total_steps=9),
    "rlgen.gen.pixelcnn": dict(width=8, layers=1, head_channels=8, batch_size=16, train_limit=64,
                               checkpoint_every=3, samples=2, completions=1, epochs=3),
    "rlgen.selfsup.simclr": dict(data="mnist5k", batch_size=64, log_every=5, knn_every=10, checkpoint_every=10,
                                 threads=1, total_steps=35),
    "rlgen.selfsup.moco": dict(data="mnist5k", batch_size=64, log_every=5, knn_every=10, checkpoint_every=10,
                               threads=1, queue_size=512, total_steps=35),
    "rlgen.selfsup.supervised": dict(data="mnist5k", batch_size=64, log_every=5, threads=1, total_steps=35),
    "rlgen.selfsup.stdim": dict(data="atari-frames:breakout", frames=1400, batch_size=16, lr=1e-3, minutes=None,
                                checkpoint_every=3, log_every=5, amp="off", total_steps=9),
}
def diff(a_path: str, b_path: str) -> None:
    def load(path: str) -> dict:
        text = open(path).read()
        return json.loads(text[text.rindex("\n{\n") + 1 if "\n{\n" in text else text.index("{"):])
    # the optimizer-step counter was called steps in some summaries before it was updates in all
    a, b = ({cmd: {("updates" if k == "steps" else k): v for k, v in d.items()} for cmd, d in load(p).items()}
            for p in (a_path, b_path))
    for cmd in a:
        changed = [f"{k}: {a[cmd].get(k)} -> {b.get(cmd, {}).get(k)}" for k in sorted(set(a[cmd]) | set(b.get(cmd, {})))
                   if a[cmd].get(k) != b.get(cmd, {}).get(k)]
        print(f"{cmd:28s} {'same numbers' if not changed else '; '.join(changed)}")


if sys.argv[1] == "--diff":
    diff(sys.argv[2], sys.argv[3])
    sys.exit(0)
# Flags renamed since earlier revisions (new name: old name), applied where the revision run lacks the new one.
RENAMED = {"rlgen.gen.gan": {"total_steps": "steps"}, "rlgen.gen.pixelcnn": {"width": "channels"}}
out = {}
for mod_name, kw in C.items():
    kw = dict(kw)
    mod = importlib.import_module(mod_name)
    fields = {f.name: f for f in dataclasses.fields(mod.Args)}
    for new_name, old_name in RENAMED.get(mod_name, {}).items():
        if new_name not in fields and old_name in fields:
            kw[old_name] = kw.pop(new_name)
    if "amp" in kw and isinstance(fields["amp"].default, bool):  # stdim's --amp was a switch
        kw["amp"] = False
    with tempfile.TemporaryDirectory() as d:
        s = mod.main(mod.Args(run_dir=d + "/r", **kw))
    out[mod_name] = {k: v for k, v in s.items() if isinstance(v, (int, float)) and not k.endswith("seconds")
                     and "minutes" not in k and "per_" not in k and "rate" not in k}
    print(mod_name, "done", file=sys.stderr, flush=True)
print(json.dumps(out, indent=1, sort_keys=True))
