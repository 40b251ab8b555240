"""The credential sheet, kept whole: every command that adds, removes or resets an account
writes it anew from the accounts that exist now (accounts.credentials writes the files)."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from . import credentials


def current_accounts() -> list[dict]:
    """Every account a person logs in with: staff (the console) first, then participants."""
    accounts = []
    users = get_user_model().objects.select_related("workspace").order_by("-is_staff", "username")
    for user in users:
        if user.is_staff:
            accounts.append({"username": user.get_username(), "path": "/admin/"})
        elif hasattr(user, "workspace"):
            accounts.append({"username": user.get_username(), "path": f"/user/{user.workspace.slug}/"})
    return accounts


def update_sheet(changed: list[dict] = (), folder: Path | str | None = None) -> tuple[Path, Path]:  # type: ignore[assignment]
    """Rewrite the sheet with `changed` ({username, password}) and every other current account's
    password as the sheet held it, at the workshop's public address (WORKSHOP_URL)."""
    return credentials.write_sheet(
        Path(folder or settings.CREDENTIALS_DIR), list(changed), settings.WORKSHOP_URL, current_accounts()
    )
