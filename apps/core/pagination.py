"""`{"data": [...], "pagination": {"page", "page_size", "page_count", "total_count"}}` for every list."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db.models import QuerySet
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

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


class EnvelopePagination(PageNumberPagination):
    """DRF's page-number pagination with this API's envelope and strictness.

    Differences from DRF's defaults, each kept from the API's contract: a bad `page` or `page_size` is a
    400 naming the parameter (DRF clamps or ignores them), a page past the end is an empty page (DRF
    answers 404), and an empty list has `page_count` 0. One COUNT and one page query, whatever the size.
    """

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_number(self, request, paginator=None) -> int:
        return _positive_int(_params(request).get(self.page_query_param), self.page_query_param, 1)

    def get_page_size(self, request) -> int:
        return _positive_int(_params(request).get(self.page_size_query_param), self.page_size_query_param,
                             self.page_size, self.max_page_size)

    def paginate_queryset(self, queryset, request, view=None) -> list:
        number, size = self.get_page_number(request), self.get_page_size(request)
        self.request = request
        self.paginator = self.django_paginator_class(queryset, size)
        # Past the end (or an empty list) is an empty page without a page query, not DRF's 404.
        self.page = self.paginator.page(number) if number <= self.paginator.num_pages and self.paginator.count else None
        self.number, self.size = number, size
        return list(self.page) if self.page is not None else []

    def get_envelope(self, data: list) -> dict:
        total = self.paginator.count
        return {
            "data": data,
            "pagination": {
                "page": self.number,
                "page_size": self.size,
                "page_count": self.paginator.num_pages if total else 0,
                "total_count": total,
            },
        }

    def get_paginated_response(self, data) -> Response:
        return Response(self.get_envelope(data))


def _params(request):
    # A DRF Request or a plain Django HttpRequest (App-host views hand either).
    return request.query_params if hasattr(request, "query_params") else request.GET


def paginate(request, queryset: QuerySet, serialize: Callable[[Any], dict]) -> dict:
    """The envelope for one page of `queryset` (views that build their own Response call this)."""
    pagination = EnvelopePagination()
    items = pagination.paginate_queryset(queryset, request)
    return pagination.get_envelope([serialize(item) for item in items])
