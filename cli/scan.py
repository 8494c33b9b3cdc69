"""``polaris scan rotate-secret <chargeBoxId>``: a new QR secret for a charger.

The same service function as ``POST /api/v1/chargers/{id}/scan-secret``. Prints the QR code's
URL (and the secret) once; print or display it at the charger. Every earlier code stops working.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from config.settings import Settings
from db.engine import make_engine, make_session_factory
from db.scan_secrets import RotationRefused, rotate_scan_secret

REFUSALS = {
    "unknown_charger": "no such charger",
    "unauthenticated_charger": (
        "this charger connects without a password; scan sign-in needs an authenticated charger"
    ),
}


async def run_scan_command(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.require_database_url(), pool_size=1)
    try:
        async with make_session_factory(engine).begin() as db:
            rotated = await rotate_scan_secret(
                db,
                args.charge_box_id,
                actor=f"cli:{getpass.getuser()}",
                source="cli",
                page_url=settings.scan_qr_page_url,
            )
    except RotationRefused as exc:
        print(f"polaris: {args.charge_box_id}: {REFUSALS[exc.reason]}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print(f"charger:  {rotated.charge_box_id}")
    print(f"qr url:   {rotated.qr_url}")
    print(f"secret:   {rotated.secret}")
    print("Shown once: put this URL in the charger's QR code. Earlier codes no longer work.")
    return 0


__all__ = ["run_scan_command"]
