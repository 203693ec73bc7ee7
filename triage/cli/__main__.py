"""`python -m triage.cli`: the same command line as `triage`."""

from triage.cli import main

main()
