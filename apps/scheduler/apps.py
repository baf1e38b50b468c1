from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    """The platform's one scheduler for periodic work (SPEC §13 "Scheduler", §15 "Retention"). Top layer: its
    registry names jobs of every app below it."""

    name = "apps.scheduler"
    label = "scheduler"

    def ready(self) -> None:
        # Embedded default only (thread executor), server processes only; see runner.py.
        # Imported here, not at the top: the runner imports models, which need the app registry ready.
        from .runner import install_scheduler_on_start

        install_scheduler_on_start()
