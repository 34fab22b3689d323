"""Local skills for the console's end-to-end tests (no network, no API keys)."""

import os
import time
from pathlib import Path

from flowengine import FlowContext
from neurocore.skills.base import Skill, SkillMeta


class PrepareSkill(Skill):
    """Copy the input amount into the context, doubled."""

    skill_meta = SkillMeta(name="prepare", version="1.0.0", provides=["prepared"])

    def process(self, context: FlowContext) -> FlowContext:
        context.set(
            "prepared", {"amount": context.get("amount", 0), "double": context.get("amount", 0) * 2}
        )
        return context


class FinishSkill(Skill):
    """Mark the run as finished."""

    skill_meta = SkillMeta(name="finish", version="1.0.0", provides=["finished"])

    def process(self, context: FlowContext) -> FlowContext:
        context.set("finished", True)
        return context


class FlakySkill(Skill):
    """Fail while the file named by $CONSOLE_TEST_FLAG_FILE exists."""

    skill_meta = SkillMeta(name="flaky", version="1.0.0", provides=["fetched"])

    def process(self, context: FlowContext) -> FlowContext:
        flag = os.environ.get("CONSOLE_TEST_FLAG_FILE")
        if flag and Path(flag).exists():
            raise RuntimeError(f"upstream unavailable while {flag} exists")
        context.set("fetched", "rows")
        return context


class SlowBranchSkill(Skill):
    """Sleep a little so parallel DAG branches overlap, then write a key."""

    skill_meta = SkillMeta(name="slow_branch", version="1.0.0")

    def process(self, context: FlowContext) -> FlowContext:
        time.sleep(0.05)
        context.set(f"branch_{self.name}", self.name)
        return context


class SyncHoldSkill(Skill):
    """A synchronous skill that suspends the run until resumed (flowengine checkpoint path)."""

    skill_meta = SkillMeta(name="sync_hold", version="1.0.0", provides=["released"])

    def process(self, context: FlowContext) -> FlowContext:
        context.suspend(node_id=self.name, reason="waiting for an external signal")
        return context


class HoldWhileFlagSkill(Skill):
    """Block while the file named by $CONSOLE_TEST_HOLD_FILE exists (at most two minutes);
    count each start in $CONSOLE_TEST_COUNT_FILE."""

    skill_meta = SkillMeta(name="hold_while_flag", version="1.0.0", provides=["held"])

    def process(self, context: FlowContext) -> FlowContext:
        # Each start appends a line to $CONSOLE_TEST_COUNT_FILE: how often the step ran.
        if count := os.environ.get("CONSOLE_TEST_COUNT_FILE"):
            with open(count, "a") as runs:
                runs.write(f"{os.getpid()}\n")
        flag = os.environ.get("CONSOLE_TEST_HOLD_FILE")
        deadline = time.monotonic() + 120
        while flag and Path(flag).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        context.set("held", True)
        return context


class EffectSkill(Skill):
    """A side effect: each run appends a line to $CONSOLE_TEST_EFFECT_FILE."""

    skill_meta = SkillMeta(name="effect", version="1.0.0", provides=["notified"])

    def process(self, context: FlowContext) -> FlowContext:
        if effects := os.environ.get("CONSOLE_TEST_EFFECT_FILE"):
            with open(effects, "a") as done:
                done.write(f"{os.getpid()}\n")
        context.set("notified", True)
        return context
