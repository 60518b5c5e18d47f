"""`python -m lsvr ...` and `torchrun -m lsvr ...` enter here."""

from lsvr.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
