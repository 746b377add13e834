def mask_secret(value: str | None, visible: int = 4) -> str:
    """Show only the last few characters of a secret: enough to tell two tokens apart, no more."""
    if not value:
        return ""
    if len(value) <= visible * 2:
        return "•" * 8
    return "•" * 8 + value[-visible:]
