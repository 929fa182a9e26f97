"""``rlgen export RUN OUT_DIR``: a folder to share, laid out as a Hugging Face model repository.

The folder holds ``checkpoint.pt`` with the weights only (no optimizer, replay or generator states; it loads
back with ``rlgen.load(OUT_DIR)``), ``config.json`` (the run's arguments and the machine it trained on),
``summary.json``, a model card ``README.md`` with YAML metadata (the algorithm, the environment or dataset, the
run's results with units, the command that reproduces it, the training machine's CPU, device and library
versions), the learning curve and the episode recording (recorded now where the run kept none) or sample grid;
an agent's ``results.json`` holds its evaluation in the keys Stable-Baselines3's hub packages use.
``--push-to-hub REPO_ID`` uploads it with ``huggingface_hub`` (``pip install 'rlgen[hub]'``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from rlgen import checkpoint
from rlgen.errors import UsageError
from rlgen.files import atomic_write_bytes, write_json
from rlgen.loading import default_kind, load
from rlgen.machine import cpu_name
from rlgen.plots import save_episode_gif
from rlgen.registry import COMMAND_OF_ALGO, COMMANDS
from rlgen.rl.agents import Agent
from rlgen.rl.envs import record_episode
from rlgen.version import __version__

# What only training needs: optimizers, replays, generator states and target copies stay behind.
TRAINING_ONLY = ("replay", "rng", "aug_rng", "target_net")
PICTURES = ("learning_curve.png", "episode.gif", "eval_episode.mp4", "eval_episode.gif", "greedy_episode.mp4",
            "greedy_episode.gif", "samples.png", "training.gif", "losses.png", "policy.png", "knn.png", "loss.png")
FAMILY = {"dqn": "reinforcement-learning", "reinforce": "reinforcement-learning",
          "qlearning": "reinforcement-learning", "value_iteration": "reinforcement-learning",
          "vae": "image-generation", "gan": "image-generation", "pixelcnn": "image-generation"}


@dataclass
class ExportArgs:
    run: str = ""
    """run folder (or checkpoint file) of any rlgen training command"""
    out: str = ""
    """folder to write (new or empty)"""
    best: bool = False
    """export the weights of the run's best evaluation (best.pt, dqn)"""
    push_to_hub: str | None = None
    """also upload the folder to this Hugging Face repository (user/name; needs pip install 'rlgen[hub]' and a
    token from huggingface-cli login or HF_TOKEN)"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("run", "out")


def training_only(key: str) -> bool:
    return key in TRAINING_ONLY or "optim" in key or "sched" in key or key.endswith("_opt")


def weights_only(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint without what only training needs."""
    return {k: v for k, v in ckpt.items() if not training_only(k)}


def reproduce_command(algo: str, ckpt: dict[str, Any]) -> str:
    """The command line that trains the same run: the flags it was started with (recorded in its checkpoint;
    older checkpoints: every argument away from its command's default)."""
    command = COMMAND_OF_ALGO.get(algo, algo)
    if command not in COMMANDS:
        return f"(no rlgen command trains {algo!r} runs)"
    flags = ckpt.get("flags")
    if flags is None:
        fields = dataclasses.fields(importlib.import_module(COMMANDS[command][0]).Args)
        defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
        flags = {k: v for k, v in ckpt["args"].items() if k in defaults and v != defaults[k] and v is not None
                 and k not in ("run_dir", "resume", "wandb", "wandb_project", "wandb_entity", "wandb_name")}
    words = ["rlgen", command]
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif value is not None:
            words += [flag, shlex.quote(str(value))]
    return " ".join(words)


def where_it_ran(machine: dict[str, Any] | None, train_seconds: float) -> list[str]:
    """The model card's lines on the machine that trained the run, from its ``config.json``; a run written before
    runs recorded their machine says so and names only the exporting one's CPU."""
    if not machine:
        return [f"- not recorded by the run; exported on a {cpu_name()} with torch {torch.__version__}",
                f"- training time: {train_seconds:.0f} s"]
    units = [name for name, used in (("bf16", machine.get("bf16_units")), ("AMX", machine.get("amx"))) if used]
    versions = ", ".join(f"{name} {v}" for name, v in (machine.get("versions") or {}).items() if v)
    device = machine.get("device", "cpu") + (f" ({machine['gpu']})" if machine.get("gpu") else "")
    return [f"- CPU: {machine.get('cpu')}, {machine.get('cores')} cores"
            + (f", {' and '.join(units)} units" if units else ", no bf16 units"),
            f"- device: {device}", f"- Python {machine.get('python')}; {versions}",
            f"- training time: {train_seconds:.0f} s"]


def model_card(algo: str, args: dict[str, Any], summary: dict[str, Any], results: list[str], command: str,
               files: list[str], machine: dict[str, Any] | None = None) -> str:
    """README.md with YAML metadata, in the form the Hugging Face Hub reads."""
    subject = args.get("env") or args.get("data") or ""
    meta = ["---", "library_name: rlgen", "tags:", f"- {algo}", f"- {FAMILY.get(algo, 'representation-learning')}"]
    if subject:
        meta.append(f"- {subject}")
    meta += ["model-index:", f"- name: {algo}-{subject}".rstrip("-"), "  results:",
             f"  - task: {{type: {FAMILY.get(algo, 'representation-learning')}}}",
             f"    dataset: {{name: {subject or 'none'}, type: {subject or 'none'}}}", "    metrics:"]
    for key in ("final_eval_return_mean", "eval_return_mean", "fid", "test_nll_nats", "test_elbo_nats", "knn_top1",
                "linear_top1", "end_to_end_top1"):
        if isinstance(summary.get(key), (int, float)):
            std = summary.get(key.replace("_mean", "_std")) if key.endswith("_mean") else None
            value = f"{summary[key]:.2f} +/- {std:.2f}" if isinstance(std, (int, float)) else f"{summary[key]:.4g}"
            meta.append(f"    - {{type: {key}, value: '{value}'}}")
            break
    meta.append("---")
    body = [f"# rlgen {algo}" + (f" on {subject}" if subject else ""), "",
            f"Trained with [rlgen](https://pypi.org/project/rlgen/) {__version__}.", "", "## Results", ""]
    body += [f"- {line}" for line in results] or ["- (the run recorded no result lines)"]
    body += ["", "## Use it", "", "```python", "import rlgen", "", "trained = rlgen.load(\"path/to/this/folder\")"]
    kind = default_kind(algo)
    body += {"agent": ["action, _ = trained.predict(obs, deterministic=True)", "returns = trained.evaluate()"],
             "generator": ["images = trained.sample(16)"],
             "encoder": ["features = trained.encode(images)"]}[kind]
    body += ["```", "", "## Reproduce it", "", "```", command, "```", "", "## Where it ran", ""]
    body += where_it_ran(machine, summary.get("train_seconds", 0)) + ["", "## Files", ""]
    body += [f"- `{name}`" for name in files]
    pictures = [n for n in files if n.endswith((".png", ".gif"))]
    body += [""] + [f"![{n}]({n})" for n in pictures]
    return "\n".join(meta + body) + "\n"


def export(args: ExportArgs) -> dict[str, Any]:
    """Write the shareable folder (whole or not at all); with ``--push-to-hub``, upload it."""
    if not args.run or not args.out:
        raise UsageError("rlgen export RUN OUT_DIR: give a run folder and the folder to write")
    run = Path(args.run)
    folder = run if run.is_dir() else run.parent
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty folder; give a new one")
    which = "best" if args.best else "last"
    load(run, which)  # what is exported loads: a run of no kind, or a corrupt file, fails here, before writing
    ckpt = checkpoint.load(folder / "best.pt" if args.best else run)
    algo = str(ckpt["algo"])
    summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").exists() else {}
    results = (folder / "results.txt").read_text().splitlines() if (folder / "results.txt").exists() else []
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    machine = config.get("machine") if isinstance(config.get("machine"), dict) else None
    command = reproduce_command(algo, ckpt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with open(tmp / checkpoint.FILENAME, "wb") as fh:
            torch.save(weights_only(ckpt), fh)
        write_json(tmp / "config.json", {"algo": algo, "args": ckpt["args"], "machine": machine})
        if summary:
            write_json(tmp / "summary.json", summary)
        files = [checkpoint.FILENAME, "config.json"] + (["summary.json"] if summary else [])
        for name in PICTURES:
            if (folder / name).exists():
                shutil.copyfile(folder / name, tmp / name)
                files.append(name)
        trained = load(run, which)
        if isinstance(trained, Agent):
            if not any(name.endswith(("episode.gif", "episode.mp4")) for name in files):
                frames, _ = record_episode(lambda obs: trained.act(obs), lambda: trained.make_env("rgb_array"),
                                           trained.eval_seed, trained.eval_epsilon)
                if save_episode_gif(tmp / "episode.gif", frames) is not None:
                    files.append("episode.gif")
            write_json(tmp / "results.json", agent_results(trained, summary))
            files.append("results.json")
        atomic_write_bytes(tmp / "README.md", model_card(algo, dict(ckpt["args"]), summary, results, command,
                                                         files, machine).encode())
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"exported {algo} ({which} weights) to {out}: {len(files) + 1} files; model card {out / 'README.md'}")
    result = {"algo": algo, "out": str(out), "files": sorted([*files, "README.md"])}
    if args.push_to_hub:
        result["url"] = push(out, args.push_to_hub)
    return result


def agent_results(agent: Agent, summary: dict[str, Any]) -> dict[str, Any]:
    """The evaluation in the keys Stable-Baselines3's hub packages use (``results.json``)."""
    mean = summary.get("final_eval_return_mean", summary.get("eval_return_mean"))
    std = summary.get("final_eval_return_std", summary.get("eval_return_std"))
    return {"env_id": agent.env_id, "mean_reward": mean, "std_reward": std,
            "n_evaluation_episodes": summary.get("eval_episodes"), "eval_seed": agent.eval_seed,
            "human_normalized_score": agent.human_normalized(mean) if mean is not None else None}


def push(folder: Path, repo_id: str) -> str:
    """Upload ``folder`` to the Hugging Face model repository ``repo_id``; a one-line UsageError without the
    extra, a token or the network (the folder stays)."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise UsageError(f"--push-to-hub needs huggingface_hub (pip install 'rlgen[hub]'); the folder is ready at "
                         f"{folder}") from None
    try:
        api = HfApi()
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                 commit_message=f"rlgen {__version__} export")
    except Exception as err:  # network, token or permission: the hub's own words, on one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise UsageError(f"--push-to-hub {repo_id}: the upload failed ({first}); the folder is ready at "
                         f"{folder}") from None
    url = str(getattr(info, "commit_url", f"https://huggingface.co/{repo_id}"))
    print(f"uploaded to {url}")
    return url
