"""Local skills for the demo blueprints: deterministic, offline, quick."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from flowengine import FlowContext
from neurocore.skills.base import Skill, SkillMeta

# While this file exists, the nightly import's upstream is "down" and its fetch step fails.
UPSTREAM_DOWN_FLAG = Path(__file__).resolve().parent.parent / "data" / "upstream-down.flag"


class CheckInvoiceSkill(Skill):
    """Check an invoice and prepare the payment for approval."""

    skill_meta = SkillMeta(
        name="check_invoice", version="1.0.0", provides=["payment"], consumes=["invoice"]
    )

    def process(self, context: FlowContext) -> FlowContext:
        invoice = context.get("invoice", {}) or {}
        amount = float(invoice.get("amount", 0))
        context.set(
            "payment",
            {
                "payee": invoice.get("vendor", "unknown"),
                "amount": round(amount, 2),
                "currency": invoice.get("currency", "EUR"),
                "risk": "high" if amount >= 10_000 else "normal",
            },
        )
        return context


class SendPaymentSkill(Skill):
    """Pretend to send the approved payment: a transfer reference, no money moves."""

    skill_meta = SkillMeta(name="send_payment", version="1.0.0", provides=["transfer"])

    def process(self, context: FlowContext) -> FlowContext:
        payment = context.get("payment", {}) or {}
        digest = hashlib.sha256(repr(sorted(payment.items())).encode()).hexdigest()
        context.set("transfer", {"reference": f"TRF-{digest[:10].upper()}", "status": "sent"})
        return context


class DraftArticleSkill(Skill):
    """Draft an article from its topic."""

    skill_meta = SkillMeta(name="draft_article", version="1.0.0", provides=["draft"])

    def process(self, context: FlowContext) -> FlowContext:
        topic = context.get("topic", "Untitled")
        context.set(
            "draft",
            {
                "title": topic,
                "body": f"{topic}: what changed, why it matters, and what comes next.",
                "words": 640,
            },
        )
        return context


class PublishArticleSkill(Skill):
    """Publish the approved article (to a made-up address)."""

    skill_meta = SkillMeta(name="publish_article", version="1.0.0", provides=["published"])

    def process(self, context: FlowContext) -> FlowContext:
        draft = context.get("draft", {}) or {}
        slug = "-".join(str(draft.get("title", "post")).lower().split())[:60]
        context.set("published", {"url": f"https://blog.example.com/{slug}"})
        return context


class ProfileTableSkill(Skill):
    """Count the rows of the table to clean."""

    skill_meta = SkillMeta(name="profile_table", version="1.0.0", provides=["profile"])

    def process(self, context: FlowContext) -> FlowContext:
        rows = int(context.get("rows", 1000))
        context.set("profile", {"rows": rows, "table": context.get("table", "customers")})
        return context


class CleanupCheckSkill(Skill):
    """One independent cleanup check (duplicates, nulls, formats): the DAG's branches."""

    skill_meta = SkillMeta(name="cleanup_check", version="1.0.0")

    def process(self, context: FlowContext) -> FlowContext:
        time.sleep(0.05)  # the branches run side by side
        rows = (context.get("profile", {}) or {}).get("rows", 0)
        context.set(f"{self.name}_found", rows // (len(self.name) + 7))
        return context


class CleanupReportSkill(Skill):
    """Sum up what the checks found."""

    skill_meta = SkillMeta(name="cleanup_report", version="1.0.0", provides=["report"])

    def process(self, context: FlowContext) -> FlowContext:
        found = {
            key.removesuffix("_found"): value
            for key, value in context.data.to_dict().items()
            if key.endswith("_found")
        }
        context.set("report", {"issues": found, "total": sum(found.values())})
        return context


class FetchFeedSkill(Skill):
    """Fetch the nightly feed; fails while the upstream is down (the flag file exists)."""

    skill_meta = SkillMeta(name="fetch_feed", version="1.0.0", provides=["feed"])

    def process(self, context: FlowContext) -> FlowContext:
        if UPSTREAM_DOWN_FLAG.exists():
            raise ConnectionError(
                f"upstream feed unavailable (remove {UPSTREAM_DOWN_FLAG.name} to bring it back)"
            )
        context.set("feed", {"records": 1250, "source": context.get("source", "crm")})
        return context


class LoadRecordsSkill(Skill):
    """Load the fetched records."""

    skill_meta = SkillMeta(name="load_records", version="1.0.0", provides=["loaded"])

    def process(self, context: FlowContext) -> FlowContext:
        feed = context.get("feed", {}) or {}
        context.set("loaded", {"records": feed.get("records", 0)})
        return context
