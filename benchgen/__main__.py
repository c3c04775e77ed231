"""`python -m benchgen ...` runs the command-line interface (also the `torchrun -m benchgen` entry)."""

from benchgen.cli import main

if __name__ == "__main__":
    main()
