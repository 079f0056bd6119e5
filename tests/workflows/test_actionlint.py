"""The workflows pass a real GitHub-workflow validator (actionlint, built by scripts/deps/actionlint.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def actionlint() -> str:
    cache = Path(os.environ.get("FLY_POTATO_TOOLCHAIN", Path.home() / ".cache/fly-potato/toolchain"))
    found = shutil.which("actionlint") or (cache / "bin" / "actionlint")
    assert Path(found).exists(), "actionlint is missing: run scripts/deps/actionlint.sh (make deps)"
    return str(found)


def test_workflows_pass_actionlint() -> None:
    result = subprocess.run(
        [actionlint(), "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows"
    broken.mkdir(parents=True)
    (broken / "bad.yml").write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: actions/checkout@v4\n        run: echo both\n"
    )
    result = subprocess.run(
        [actionlint(), "-no-color", str(broken / "bad.yml")], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


def test_pull_requests_run_the_offline_plan_for_both_stacks_and_preview_with_the_pack() -> None:
    pr = yaml.safe_load((ROOT / ".github/workflows/pull-request.yml").read_text())
    jobs = pr["jobs"]
    assert jobs["plan"]["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert "secrets" not in str(jobs["plan"]), "the offline plan must run without secrets (forks)"
    preview = next(s for s in jobs["preview"]["steps"] if str(s.get("uses", "")).startswith("pulumi/actions"))
    assert preview["with"]["command"] == "preview" and preview["with"]["policyPacks"] == "policy"
    assert preview["with"]["comment-on-pr"] is True


def test_prod_deploys_through_a_protected_environment_after_dev() -> None:
    deploy = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())
    assert deploy["jobs"]["prod"]["environment"] == "production"
    assert deploy["jobs"]["prod"]["needs"] == ["dev"]


def test_every_deploy_previews_with_the_pack_before_its_up() -> None:
    """The pack's rules are stack policies; an update evaluates them only after its last resource is
    created, so each deploy job runs a preview with the pack first, and ``up`` only after it."""
    deploy = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())
    for job in ("dev", "prod"):
        steps = [s for s in deploy["jobs"][job]["steps"] if str(s.get("uses", "")).startswith("pulumi/actions")]
        commands = [s["with"]["command"] for s in steps]
        assert commands.index("preview") < commands.index("up"), (job, commands)
        preview = steps[commands.index("preview")]
        assert preview["with"]["policyPacks"] == "policy" and preview["with"]["stack-name"] == job
    assert "--skip-preview" not in (ROOT / "scripts/stack.sh").read_text()
