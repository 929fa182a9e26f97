"""Every rlgen command: the module that runs it and what it does, in one line each (``rlgen`` lists them)."""

# name: (module, what it does): the training and tool commands, each the module's own flags
COMMANDS: dict[str, tuple[str, str]] = {
    "dqn": ("rlgen.rl.dqn", "Deep Q-Networks on classic control and Atari (incl. the Atari 100k preset)"),
    "reinforce": ("rlgen.rl.reinforce", "REINFORCE policy gradient, with a learned baseline, on CartPole and Pong"),
    "qlearning": ("rlgen.rl.qlearning", "tabular Q-learning and value iteration on FrozenLake, Taxi, CliffWalking"),
    "vae": ("rlgen.gen.vae", "variational autoencoder on images (MLP or conv), IWAE bound"),
    "gan": ("rlgen.gen.gan", "GANs: vanilla, least-squares and DCGAN, with Fréchet distance"),
    "pixelcnn": ("rlgen.gen.pixelcnn", "PixelCNN autoregressive image model, exact NLL"),
    "sample": ("rlgen.gen.generate", "sample images from a GAN, VAE or PixelCNN run (alias: generate)"),
    "inception": ("rlgen.gen.inception", "Inception statistics and FID of images against a dataset"),
    "simclr": ("rlgen.selfsup.simclr", "SimCLR contrastive pretraining (NT-Xent)"),
    "moco": ("rlgen.selfsup.moco", "MoCo v2 contrastive pretraining (momentum encoder and key queue)"),
    "supervised": ("rlgen.selfsup.supervised", "supervised baseline encoder for the probes"),
    "stdim": ("rlgen.selfsup.stdim", "ST-DIM spatio-temporal pretraining on Atari frames"),
    "probe": ("rlgen.selfsup.probe", "linear and kNN probes of any encoder on labelled images"),
    "atari_probe": ("rlgen.selfsup.atari_probe", "AtariARI state probes of any encoder on Atari frames"),
    "show": ("rlgen.data.show", "preview a dataset: a PNG grid, counts and load times"),
}
ALIASES = {"generate": "sample", "atari-probe": "atari_probe"}
# A checkpoint's algo names the command that wrote it, except value iteration, which is qlearning's flag.
COMMAND_OF_ALGO = {"value_iteration": "qlearning"}
