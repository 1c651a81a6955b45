"""DVC stage `register`: validate params.yaml's `register` section and run it (see src/aeops)."""

import sys

from aeops.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("register"))
