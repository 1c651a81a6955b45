"""The shell commands README.md shows, read from its ```bash blocks (for the journey tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO

NEEDS = "# needs:"  # a block that starts so names infrastructure no machine of ours has
COMMAND_WORDS = ("make", "dvc", "aeops", "python", "curl", "mlflow", "torchrun", "srun", "export", "source", "git")


@dataclass
class Block:
    commands: list[str]
    needs: str | None  # the reason, for a `# needs:` block


def _strip_comment(line: str) -> str:
    """Drop a trailing `# comment` (outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or line[i - 1] == " "):
            return line[:i].rstrip()
    return line.rstrip()


def blocks(path: Path = REPO / "README.md") -> list[Block]:
    """Every ```bash block: its commands (continuations joined, comments dropped) and its `# needs:`."""
    found = []
    for body in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        lines = [line.strip() for line in body.replace("\\\n", " ").splitlines()]
        needs = lines[0][len(NEEDS):].strip() if lines and lines[0].startswith(NEEDS) else None
        commands = [c for c in (_strip_comment(line) for line in lines) if c]
        found.append(Block([re.sub(r"\s+", " ", c) for c in commands], needs))
    return found


def runnable() -> list[str]:
    """Commands of the blocks that this machine can run, in README order."""
    return [c for b in blocks() if b.needs is None for c in b.commands]


def inline_commands(path: Path = REPO / "README.md") -> list[str]:
    """Inline `code` that is a whole command line (a command word and at least two arguments)."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    spans = re.findall(r"`([^`\n]+)`", text)
    return [s for s in spans if s.split()[0] in COMMAND_WORDS and len(s.split()) >= 3]
