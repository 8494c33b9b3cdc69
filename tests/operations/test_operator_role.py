"""The operator role at the auth service: a staff account like an admin's for the things that
would hand its powers to someone else (impersonation, scan-to-login), without BetterAuth admin
powers."""

from __future__ import annotations

import httpx

from tests.fixtures.auth import AuthService
from tests.identity.conftest import person


async def _internal(service: AuthService, path: str, body: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=service.internal_url, timeout=10) as auth:
        return await auth.post(path, json=body, headers=service.internal_headers("api"))


async def test_an_operator_account_is_never_impersonated(auth_service: AuthService) -> None:
    admin = await person(auth_service, "imp-admin", role="admin")
    operator = await person(auth_service, "imp-operator", role="operator")
    answer = await _internal(
        auth_service,
        "/internal/impersonations",
        {"adminUserId": admin.user_id, "userId": operator.user_id},
    )
    assert answer.status_code == 403, answer.text


async def test_an_operator_never_signs_in_by_scan(auth_service: AuthService) -> None:
    operator = await person(auth_service, "scan-operator", role="operator")
    answer = await _internal(auth_service, "/internal/scan-sign-ins", {"userId": operator.user_id})
    assert answer.status_code == 403 and answer.json()["error"] == "admin_refused"


async def test_an_operator_is_no_better_auth_admin(auth_service: AuthService) -> None:
    """BetterAuth's own admin endpoints (list users) refuse an operator's session."""
    operator = await person(auth_service, "ba-operator", role="operator")
    async with httpx.AsyncClient(base_url=auth_service.base_url, timeout=10) as auth:
        listed = await auth.get(
            "/api/auth/admin/list-users",
            headers={"Authorization": f"Bearer {operator.session_token}"},
        )
    assert listed.status_code in (401, 403), listed.text
