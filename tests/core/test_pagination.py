"""Pagination and sorting shared by every list endpoint."""

import pytest
from django.test import RequestFactory
from rest_framework.request import Request

from apps.accounts.models import Organization
from apps.core.errors import BadRequest
from apps.core.pagination import paginate


def test_an_empty_sort_falls_back_to_the_default_order():
    """Found by the App-host fuzzer: `sort=,` crashed with an IndexError (500)."""
    from apps.core.pagination import apply_sort
    from apps.runs.models import Run

    assert apply_sort(Run.objects.all(), ",", allowed=("created_at",), default="-created_at").query.order_by == (
        "-created_at", "-pk")


# The envelope, the two queries and the 400s every list endpoint shares (pinned before pagination became a
# DRF pagination class, so the move changed nothing a client sees).

def _page(django_assert_num_queries, queries: int, as_drf: bool = True, **params) -> dict:
    request = RequestFactory().get("/list", params)
    with django_assert_num_queries(queries):
        return paginate(Request(request) if as_drf else request, Organization.objects.order_by("name"),
                        lambda org: {"name": org.name})


@pytest.fixture
def five_organizations(db):
    for name in "abcde":
        Organization.objects.create(name=name)


def test_a_page_is_one_count_and_one_page_query(five_organizations, django_assert_num_queries):
    for as_drf in (True, False):  # a DRF Request or a plain Django request
        body = _page(django_assert_num_queries, 2, as_drf, page="2", page_size="2")
        assert body == {"data": [{"name": "c"}, {"name": "d"}],
                        "pagination": {"page": 2, "page_size": 2, "page_count": 3, "total_count": 5}}


def test_blank_parameters_mean_the_defaults(five_organizations, django_assert_num_queries):
    body = _page(django_assert_num_queries, 2, page="", page_size="")
    assert body["pagination"] == {"page": 1, "page_size": 20, "page_count": 1, "total_count": 5}
    assert len(body["data"]) == 5


def test_a_page_past_the_end_is_empty_not_an_error(five_organizations, django_assert_num_queries):
    body = _page(django_assert_num_queries, 1, page="9", page_size="2")
    assert body == {"data": [], "pagination": {"page": 9, "page_size": 2, "page_count": 3, "total_count": 5}}


def test_an_empty_list_has_no_pages(db, django_assert_num_queries):
    body = _page(django_assert_num_queries, 1)
    assert body == {"data": [], "pagination": {"page": 1, "page_size": 20, "page_count": 0, "total_count": 0}}


@pytest.mark.parametrize(("params", "details"), [
    ({"page": "0"}, {"page": ["must be an integer of at least 1"]}),
    ({"page": "-3"}, {"page": ["must be an integer of at least 1"]}),
    ({"page": "two"}, {"page": ["must be a positive integer"]}),
    ({"page_size": "0"}, {"page_size": ["must be an integer between 1 and 100"]}),
    ({"page_size": "101"}, {"page_size": ["must be an integer between 1 and 100"]}),
    ({"page_size": "1.5"}, {"page_size": ["must be a positive integer"]}),
])
def test_bad_values_are_a_400_naming_the_parameter(db, django_assert_num_queries, params, details):
    with pytest.raises(BadRequest) as exc:
        _page(django_assert_num_queries, 0, **params)
    assert (exc.value.message, exc.value.details) == ("Invalid pagination.", details)


def test_the_page_size_may_be_100(five_organizations, django_assert_num_queries):
    assert _page(django_assert_num_queries, 2, page_size="100")["pagination"]["page_size"] == 100


def test_lists_paginate_with_a_drf_pagination_class():
    """Issue 10: DRF's PageNumberPagination, not a hand-written pager (query parameter names from it)."""
    from rest_framework.pagination import PageNumberPagination

    from apps.core.pagination import EnvelopePagination

    assert issubclass(EnvelopePagination, PageNumberPagination)
    assert (EnvelopePagination.page_query_param, EnvelopePagination.page_size_query_param) == ("page", "page_size")
    assert (EnvelopePagination.page_size, EnvelopePagination.max_page_size) == (20, 100)
