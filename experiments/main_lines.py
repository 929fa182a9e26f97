"""Line count of each command's ``main()`` (the function alone) and of its file, at a git revision or in the
work tree: ``python experiments/main_lines.py [REV]``. Run from the repository root."""
import ast
import subprocess
import sys

FILES = ["rlgen/rl/dqn.py","rlgen/rl/qlearning.py","rlgen/rl/reinforce.py","rlgen/gen/vae.py","rlgen/gen/gan.py",
         "rlgen/gen/pixelcnn.py","rlgen/selfsup/simclr.py","rlgen/selfsup/moco.py","rlgen/selfsup/stdim.py",
         "rlgen/selfsup/supervised.py","rlgen/selfsup/probe.py","rlgen/selfsup/atari_probe.py"]
rev = sys.argv[1] if len(sys.argv) > 1 else None
tot = 0
for f in FILES:
    show = ["git", "show", f"{rev}:{f}"]
    src = subprocess.run(show, capture_output=True, text=True).stdout if rev else open(f).read()
    tree = ast.parse(src)
    mains = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"]
    n = mains[0].end_lineno - mains[0].lineno + 1 if mains else 0
    tot += n
    print(f"{f:35s} main {n:4d}  file {len(src.splitlines()):4d}")
print("total main lines", tot)
