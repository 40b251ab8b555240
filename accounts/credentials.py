"""Participants' passwords and the credential sheet the instructor hands out.

Passwords go to the sheet (a CSV and a printable HTML page with one card per participant),
never to stdout unless the operator asks: command output ends up in logs.
"""

import csv
import io
import secrets
from html import escape
from pathlib import Path

import segno

from workshop.lib.files import atomic_write

# Easy to read aloud and type: no 0/O, 1/l/I.
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_password(length: int = 12) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def qr_svg(url: str) -> str:

    return segno.make(url, error="m").svg_inline(scale=3, dark="#000", light=None)


UNKNOWN = "(not on this sheet: workshop_users reset-password)"


def read_sheet(folder: Path) -> dict[str, str]:
    """The passwords the sheet holds, by username (only hashes are in the database)."""
    path = folder / "credentials.csv"
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        return {row["username"]: row["password"] for row in csv.DictReader(fh) if row.get("username")}


def _write_private(path: Path, text: str) -> None:
    """Replace `path` at once with a file only its owner can read (never a half-written sheet,
    never a moment when it is readable by others)."""
    atomic_write(path, text, private=True)


def write_sheet(folder: Path, changed: list[dict], base_url: str, accounts: list[dict]) -> tuple[Path, Path]:
    """Write the whole sheet anew: one row and one card for every account in `accounts`
    ({username, path}, the current ones), with the password from `changed` ({username,
    password}) or else the one the sheet held. Removed accounts drop out, none appears twice,
    and every address uses `base_url` (the workshop's public address). Owner-only files."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = folder / "credentials.csv", folder / "credentials.html"
    passwords = read_sheet(folder)
    passwords.update({row["username"]: row["password"] for row in changed})
    base = base_url.rstrip("/")
    rows = [
        {"username": a["username"], "password": passwords.get(a["username"], UNKNOWN), "url": base + a["path"]}
        for a in accounts
    ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["username", "password", "url"])
    for row in rows:
        writer.writerow([row["username"], row["password"], row["url"]])
    _write_private(csv_path, out.getvalue())
    cards = [
        f'<section class="card"><div class="qr">{qr_svg(row["url"])}</div><dl>'
        f"<dt>Address</dt><dd>{escape(row['url'])}</dd><dt>Username</dt><dd><b>{escape(row['username'])}</b></dd>"
        f"<dt>Password</dt><dd><code>{escape(row['password'])}</code></dd></dl></section>"
        for row in rows
    ]
    _write_private(
        html_path,
        (
            "<!doctype html><meta charset=utf-8><title>Workshop credentials</title><style>"
            "body{font-family:sans-serif}.cards{display:grid;grid-template-columns:repeat(2,1fr);gap:8mm}"
            ".card{border:1px dashed #999;padding:6mm;display:flex;gap:6mm;break-inside:avoid}"
            "dt{font-size:9pt;color:#555}dd{margin:0 0 2mm;font-size:13pt}code{font-size:15pt}</style>"
            f"<h1>Workshop credentials</h1><p>{len(rows)} accounts · {escape(base)}</p>"
            f'<div class="cards">{"".join(cards)}</div>\n'
        ),
    )
    return csv_path, html_path
