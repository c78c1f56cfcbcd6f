"""`python -m monitor` runs the command line."""

from monitor.surfaces.cli import main

if __name__ == "__main__":  # parser workers re-import the main module: run nothing then
    raise SystemExit(main())
