"""`{"data": [...], "pagination": {"page", "page_size", "page_count", "total_count"}}` for every list."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from django.db.models import QuerySet

from .errors import BadRequest

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def _positive_int(raw: str | None, name: str, default: int, maximum: int | None = None) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise BadRequest("Invalid pagination.", details={name: ["must be a positive integer"]})
    if value < 1 or (maximum is not None and value > maximum):
        limit = f" between 1 and {maximum}" if maximum else " of at least 1"
        raise BadRequest("Invalid pagination.", details={name: [f"must be an integer{limit}"]})
    return value


def apply_sort(queryset: QuerySet, raw: str | None, *, allowed: Iterable[str], default: str) -> QuerySet:
    """`sort=created_at` or `sort=-created_at` (comma-separated), only over `allowed` fields."""
    allowed = set(allowed)
    fields = [f.strip() for f in (raw or "").split(",") if f.strip()] or [default]
    for field in fields:
        if field.lstrip("-") not in allowed:
            raise BadRequest("Invalid sort.", details={"sort": [f"sortable fields: {', '.join(sorted(allowed))}"]})
    return queryset.order_by(*fields, "-pk" if fields[0].startswith("-") else "pk")


def paginate(request, queryset: QuerySet, serialize: Callable[[Any], dict]) -> dict:
    """One COUNT and one page query, whatever the table size."""
    params = request.query_params if hasattr(request, "query_params") else request.GET
    page = _positive_int(params.get("page"), "page", 1)
    page_size = _positive_int(params.get("page_size"), "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    total = queryset.count()
    offset = (page - 1) * page_size
    items = list(queryset[offset : offset + page_size]) if offset < total else []
    return {
        "data": [serialize(item) for item in items],
        "pagination": {
            "page": page,
            "page_size": page_size,
            "page_count": math.ceil(total / page_size) if total else 0,
            "total_count": total,
        },
    }
