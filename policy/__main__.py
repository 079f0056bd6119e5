"""Entry point the Pulumi CLI runs for `--policy-pack policy`: it only builds the pack (the
constructor serves the analyzer and never returns); the policies live in importable modules."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from policy.pack import pack_arguments

PolicyPack(**pack_arguments())
