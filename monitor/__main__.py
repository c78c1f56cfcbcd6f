"""`python -m monitor` runs the command line."""

from monitor.cli import main

if __name__ == "__main__":  # parser workers re-import the main module: run nothing then
    raise SystemExit(main())
