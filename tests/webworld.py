"""A small world for the web tests: two customers of two reps, releases with milestones at every risk
level relative to today (the web reads the real clock), inbox messages and a token for every role."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from lifecycle import registry, tokens
from lifecycle.db import session_scope
from lifecycle.models import InboxMessage, Notice

ALICE = "alice@vendor.example"  # acme's rep
BOB = "bob@vendor.example"  # globex's rep


@dataclass
class World:
    today: dt.date
    secrets: dict[str, str] = field(default_factory=dict)  # role name -> bearer secret
    ids: dict[str, int] = field(default_factory=dict)

    def auth(self, who: str) -> dict:
        return {"Authorization": f"Bearer {self.secrets[who]}"} if who in self.secrets else {}


def build(now: dt.datetime | None = None) -> World:
    now = now or dt.datetime.now(dt.UTC)
    today = now.date()
    past = now - dt.timedelta(days=400)  # registered long ago: no short-notice guard in the way
    w = World(today=today)
    with session_scope() as s:
        acp, _ = registry.upsert_product(s, slug="acp", name="Alauda Container Platform", at=past)
        mesh, _ = registry.upsert_product(s, slug="mesh", name="Service Mesh", at=past)
        r314, _ = registry.upsert_release(s, product=acp, version="3.14", upgrade_to="3.18", at=past)
        r316, _ = registry.upsert_release(s, product=acp, version="3.16", upgrade_to="3.18", at=past)
        r318, _ = registry.upsert_release(s, product=acp, version="3.18", at=past)
        registry.upsert_release(s, product=mesh, version="1.0", at=past)
        day = dt.timedelta
        m_red, _ = registry.add_milestone(
            s, product=acp, version=r314, kind="end-of-life", date=today + day(20), at=past
        )
        m_amber, _ = registry.add_milestone(
            s, product=acp, version=r316, kind="end-of-full-support", date=today + day(60), at=past
        )
        m_eol, _ = registry.add_milestone(
            s, product=acp, version=r316, kind="end-of-life", date=today + day(300), at=past
        )
        m_318, _ = registry.add_milestone(
            s, product=acp, version=r318, kind="end-of-life", date=today + day(900), at=past
        )
        m_mesh, _ = registry.add_milestone(
            s, product=mesh, version=None, kind="end-of-sale", date=today + day(400), at=past
        )
        acme, _ = registry.upsert_customer(
            s, key="acme", name="ACME Bank", timezone="UTC", locale="en", account_rep=ALICE, at=past
        )
        globex, _ = registry.upsert_customer(
            s, key="globex", name="Globex", timezone="Europe/Berlin", locale="en", account_rep=BOB, at=past
        )
        registry.upsert_contact(s, customer=acme, email="ops@acme.example", at=past)
        registry.add_deployment(s, customer=acme, product=acp, version="3.14", cores=128, at=past)
        registry.add_deployment(s, customer=acme, product=acp, version="3.16", cores=256, at=past)
        registry.add_deployment(s, customer=globex, product=acp, version="3.16", cores=64, at=past)
        msgs = []
        for i, (cust, subject) in enumerate(
            [
                (acme, "ACP 3.14 end of life in 20 days"),
                (acme, "ACP 3.16 end of full support in 60 days"),
                (globex, "ACP 3.16 end of full support (Globex)"),
            ]
        ):
            notice = Notice(
                key=f"test:{cust.id}:{i}",
                customer_id=cust.id,
                milestone_id=m_red.id,
                kind="stage",
                slot="1m",
                due_at=now,
                status="sent",
                created_at=now,
            )
            s.add(notice)
            s.flush()
            msg = InboxMessage(
                customer_id=cust.id,
                notice_id=notice.id,
                subject=subject,
                body_text=f"{subject}.",
                created_at=now - dt.timedelta(minutes=10 - i),
                body_html=f"<!doctype html><html><body><p>Dear customer,</p><p>{subject}.</p></body></html>",
            )
            s.add(msg)
            s.flush()
            msgs.append(msg)
        for who, kw in {
            "pm": {"role": "pm", "label": "PM"},
            "rep": {"role": "rep", "rep": ALICE},
            "other_rep": {"role": "rep", "rep": BOB},
            "customer": {"role": "customer", "customer": "acme"},
            "foreign": {"role": "customer", "customer": "globex"},
            "revoked": {"role": "customer", "customer": "acme"},
        }.items():
            token, secret = tokens.create_token(s, at=past, **kw)
            w.secrets[who] = secret
            if who == "revoked":
                tokens.revoke_token(s, token.id, past)
        w.ids.update(
            acme=acme.id,
            globex=globex.id,
            acp=acp.id,
            r314=r314.id,
            r316=r316.id,
            r318=r318.id,
            m_red=m_red.id,
            m_amber=m_amber.id,
            m_eol=m_eol.id,
            m_318=m_318.id,
            m_mesh=m_mesh.id,
            msg_acme=msgs[0].id,
            msg_acme2=msgs[1].id,
            msg_globex=msgs[2].id,
        )
    return w
