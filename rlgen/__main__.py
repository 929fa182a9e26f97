"""``python -m rlgen``: the ``rlgen`` command (:mod:`rlgen.commands`)."""

from rlgen.commands import main

if __name__ == "__main__":
    main()
