"""Server-rendered web pages, one module per page (templates under templates/web/):

- `common`: rendering (the page's language, its CSP nonce), the login and role guards, CSRF, and the
  read models several pages share;
- `login`: logging in with a token and out;
- `portal`: the customer portal (inbox, releases, upgrade plans, calendar subscription);
- `dashboard`: the rep dashboard and its CSV;
- `registry`: the PM registry (timeline, and forms that preview, confirm and undo); its chart's geometry
  is `lifecycle.web.timeline`;
- `compliance`: the PM compliance report per milestone, its drill-down to customers and its CSV.

Login takes an API token once (`lifecycle token create`) and keeps a signed cookie session; every form
carries the session's CSRF secret. Pages run no scripts; the CSS inline in web/base.html is let through
the page's Content-Security-Policy by a per-response nonce. Route functions only gather data and call
the domain modules.
"""

from __future__ import annotations

from fastapi import APIRouter

from lifecycle.web.pages import compliance, dashboard, login, portal, registry
from lifecycle.web.pages.common import AgreementForm, release_view, render_page
from lifecycle.web.pages.registry import timeline

router = APIRouter(include_in_schema=False)
for _module in (login, portal, dashboard, registry, compliance):
    router.include_router(_module.router)

__all__ = ["AgreementForm", "release_view", "render_page", "router", "timeline"]
