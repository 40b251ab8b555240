"""Participants' passwords and the credential sheet the instructor hands out.

Passwords go to the sheet (a CSV and a printable HTML page with one card per participant),
never to stdout unless the operator asks: command output ends up in logs.
"""
import csv
import secrets
from html import escape
from pathlib import Path

# Easy to read aloud and type: no 0/O, 1/l/I.
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_password(length: int = 12) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def _qr_svg(url: str) -> str:
    import segno

    return segno.make(url, error="m").svg_inline(scale=3, dark="#000", light=None)


def write_sheet(folder: Path, rows: list[dict], base_url: str) -> tuple[Path, Path]:
    """Append rows ({username, password, path}) to credentials.csv and write credentials.html
    with a card for each row of this call. Both are readable by their owner only."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = folder / "credentials.csv", folder / "credentials.html"
    is_new = not csv_path.exists()
    with csv_path.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if is_new:
            writer.writerow(["username", "password", "url"])
        for row in rows:
            writer.writerow([row["username"], row["password"], base_url.rstrip("/") + row["path"]])
    cards = []
    for row in rows:
        url = base_url.rstrip("/") + row["path"]
        cards.append(
            f'<section class="card"><div class="qr">{_qr_svg(url)}</div><dl>'
            f"<dt>Address</dt><dd>{escape(url)}</dd><dt>Username</dt><dd><b>{escape(row['username'])}</b></dd>"
            f"<dt>Password</dt><dd><code>{escape(row['password'])}</code></dd></dl></section>"
        )
    html_path.write_text(
        "<!doctype html><meta charset=utf-8><title>Workshop credentials</title><style>"
        "body{font-family:sans-serif}.cards{display:grid;grid-template-columns:repeat(2,1fr);gap:8mm}"
        ".card{border:1px dashed #999;padding:6mm;display:flex;gap:6mm;break-inside:avoid}"
        "dt{font-size:9pt;color:#555}dd{margin:0 0 2mm;font-size:13pt}code{font-size:15pt}</style>"
        f'<h1>Workshop credentials</h1><div class="cards">{"".join(cards)}</div>\n'
    )
    for path in (csv_path, html_path):
        path.chmod(0o600)
    return csv_path, html_path
