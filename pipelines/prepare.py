"""DVC stage `prepare`: validate params.yaml's `prepare` section and run it (see src/aeops)."""

import sys

from aeops.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("prepare"))
