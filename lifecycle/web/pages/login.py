"""Logging in with a token, and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from lifecycle import tokens
from lifecycle.web import auth, ratelimit
from lifecycle.web.auth import SessionDep
from lifecycle.web.pages.common import (
    HOME,
    csrf_failed,
    csrf_ok,
    duration,
    render_page,
    safe_next,
)

router = APIRouter(include_in_schema=False)

# --------------------------------------------------------------------------------------------- login


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep) -> Response:
    principal = auth.page_principal(request, session)
    return RedirectResponse(HOME[principal.role] if principal else "/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, session: SessionDep, next: str | None = None) -> Response:
    csrf = auth.login_csrf(request, session)
    response = render_page(
        "web/login.html", title="Log in", login_csrf=csrf, next=safe_next(next) or "", error=None
    )
    auth.set_login_csrf(session, response, csrf)
    return response


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    error, status, at = None, 401, auth.real_now()
    wait = ratelimit.blocked(request, ratelimit.LOGIN, at)
    if wait is not None:
        error, status = f"Too many failed logins from your address. Try again in {duration(wait)}.", 429
    elif not auth.check_login_csrf(request, session, csrf):
        error = "The login form expired. Please try again."
    else:
        api_token = tokens.authenticate(session, token, at)
        if api_token is None:
            ratelimit.failed(request, session, ratelimit.LOGIN, at, token)
            error = "This token is not known or has been revoked."
    if error:
        fresh = auth.login_csrf(request, session)
        response = render_page(
            "web/login.html",
            status=status,
            title="Log in",
            login_csrf=fresh,
            next=safe_next(next) or "",
            error=error,
        )
        if wait is not None:
            response.headers["Retry-After"] = str(wait)
        auth.set_login_csrf(session, response, fresh)
        return response
    session.commit()
    assert api_token is not None  # no error: the token authenticated
    redirect = RedirectResponse(safe_next(next) or HOME[api_token.role], status_code=303)
    auth.start_session(session, redirect, api_token)
    return redirect


@router.post("/logout")
def logout(request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    principal = auth.page_principal(request, session)
    if principal is not None and not csrf_ok(principal, csrf):
        return csrf_failed(session, principal)
    response = RedirectResponse("/login", status_code=303)
    auth.end_session(response, session, principal)
    return response
