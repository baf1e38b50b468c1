"""Pagination and sorting shared by every list endpoint."""


def test_an_empty_sort_falls_back_to_the_default_order():
    """Found by the App-host fuzzer: `sort=,` crashed with an IndexError (500)."""
    from apps.core.pagination import apply_sort
    from apps.runs.models import Run

    assert apply_sort(Run.objects.all(), ",", allowed=("created_at",), default="-created_at").query.order_by == (
        "-created_at", "-pk")
