"""The Celery app: `celery -A tasks worker` and `celery -A tasks beat`.

The app is configured from lifecycle's settings (JSON only). Tasks are thin: they take ids and
call plain functions in `lifecycle`, which tests call directly.
"""

from tasks.application import app

__all__ = ["app"]
