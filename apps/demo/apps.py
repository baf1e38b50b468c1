from django.apps import AppConfig


class DemoConfig(AppConfig):
    """`manage.py demo`. Top layer: the seed touches accounts, connections, workflows, deployments and connect."""

    name = "apps.demo"
    label = "demo"
