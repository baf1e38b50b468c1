def rfc3339(value) -> str | None:
    """UTC datetime as RFC 3339 with a `Z` (the API's timestamp format); None stays None."""
    return value.isoformat().replace("+00:00", "Z") if value else None
