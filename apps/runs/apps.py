from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "apps.runs"
    label = "runs"

    def ready(self) -> None:
        # Thread executor only, server processes only (runserver, gunicorn): runs left `created` or
        # `started` by a crash are picked up on the process's first request. See recovery.py.
        # Imported here, not at the top: recovery imports models, which need the app registry ready.
        from .recovery import install_recovery_on_start

        install_recovery_on_start()
