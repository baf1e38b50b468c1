import pytest


@pytest.fixture(autouse=True)
def _development(settings):
    # `manage.py demo` refuses to run with DEBUG off (test_demo_refuses_with_debug_off), and pytest-django
    # turns DEBUG off in every test.
    settings.DEBUG = True
