"""DVC stage `monitor`: drift check of `monitor.path` against the registered model (skips when it is null)."""

import sys

from aeops.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("monitor"))
