"""The ``medlab`` command. ``medlab deid`` runs without torch and Lightning (it only reads and writes files, and
should start in a moment); every other command is the runner in ``research.cli``."""

import sys


def main() -> None:
    if sys.argv[1:2] == ["deid"]:
        from research.deid import main as deid

        return deid(sys.argv[2:])
    from research.cli import main as medlab

    return medlab()


if __name__ == "__main__":
    main()
