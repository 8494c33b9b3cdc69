"""The argument parsers of ``polaris firmware …`` and ``polaris diagnostics …`` (kept apart from
``cli/firmware.py`` so building the parser imports nothing heavy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def add_parsers(sub: Any) -> None:
    fw = sub.add_parser("firmware", help="firmware images, updates and campaigns")
    fw_sub = fw.add_subparsers(dest="firmware_command", required=True)
    upload = fw_sub.add_parser("upload", help="store a firmware image")
    upload.add_argument("file", type=Path)
    upload.add_argument("--version", required=True, help="the version the image installs")
    upload.add_argument("--name", help="the file name chargers download (default: FILE's)")
    upload.add_argument("--json", action="store_true")
    ls = fw_sub.add_parser("list", help="list firmware images")
    ls.add_argument("--json", action="store_true")
    show = fw_sub.add_parser("show", help="a charger's firmware state and updates")
    show.add_argument("charge_box_id")
    show.add_argument("--json", action="store_true")
    upd = fw_sub.add_parser("update", help="send UpdateFirmware to one charger")
    upd.add_argument("charge_box_id")
    upd.add_argument("--firmware", required=True, help="firmware id (polaris firmware list)")
    upd.add_argument("--retrieve-at", help="ISO 8601 time to download from (default: now)")
    upd.add_argument("--retries", type=int)
    upd.add_argument("--retry-interval", type=int, help="seconds")
    upd.add_argument("--json", action="store_true")
    campaign = fw_sub.add_parser("campaign", help="update many chargers in waves")
    c_sub = campaign.add_subparsers(dest="campaign_command", required=True)
    start = c_sub.add_parser("start", help="start a campaign")
    start.add_argument("--firmware", required=True)
    target = start.add_mutually_exclusive_group(required=True)
    target.add_argument("--chargers", help="A,B,C")
    target.add_argument("--site", type=int, help="every charger of this site id")
    start.add_argument("--wave-size", type=int, default=5)
    start.add_argument("--pause", type=int, default=300, help="seconds between waves")
    start.add_argument(
        "--max-failures", type=int, default=0, help="halt once more chargers than this failed"
    )
    start.add_argument(
        "--wave-deadline", type=int, default=3600, help="seconds a wave has to report Installed"
    )
    start.add_argument("--poll-interval", type=float, default=15.0, help="seconds")
    start.add_argument("--json", action="store_true")
    for name, text in (("status", "a campaign's progress"), ("halt", "halt a campaign")):
        cmd = c_sub.add_parser(name, help=text)
        cmd.add_argument("campaign_id")
        if name == "halt":
            cmd.add_argument("--reason")
        cmd.add_argument("--json", action="store_true")
    c_list = c_sub.add_parser("list", help="list campaigns")
    c_list.add_argument("--json", action="store_true")

    diag = sub.add_parser("diagnostics", help="diagnostics files from chargers")
    d_sub = diag.add_subparsers(dest="diagnostics_command", required=True)
    request = d_sub.add_parser("request", help="send GetDiagnostics with an upload URL")
    request.add_argument("charge_box_id")
    request.add_argument("--json", action="store_true")
    d_list = d_sub.add_parser("list", help="a charger's diagnostics requests and files")
    d_list.add_argument("charge_box_id")
    d_list.add_argument("--json", action="store_true")
