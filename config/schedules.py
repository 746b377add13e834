"""Every periodic task, installed into django-celery-beat's tables (editable in the admin afterwards).

Crontabs are in Asia/Ho_Chi_Minh so "nightly 02:00" means 02:00 in Vietnam, not in UTC. Each entry
has ``expires`` so a backlog after an outage does not run the same periodic task many times over.
"""

from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    crontab: str  # "minute hour day_of_month month day_of_week"
    expires_seconds: int
    enabled: bool = True
    kwargs: dict = field(default_factory=dict)
    description: str = ""


SCHEDULES: list[Schedule] = [
    Schedule("Fail stale jobs", "jobs.fail_stale_jobs", "*/5 * * * *", 240,
             description="Marks RUNNING jobs without a heartbeat for the stale window as FAILED."),
]


def register(*schedules: Schedule) -> None:
    """Apps add their schedules here (from their AppConfig.ready)."""
    known = {s.name for s in SCHEDULES}
    SCHEDULES.extend(s for s in schedules if s.name not in known)


def install_schedules() -> list[str]:
    """Create missing periodic tasks and update task/crontab of existing ones. ``enabled`` is only set
    on creation: a schedule staff switched on or off in the admin stays as they left it."""
    import json

    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    changed = []
    with transaction.atomic():
        for s in SCHEDULES:
            minute, hour, dom, month, dow = s.crontab.split()
            crontab, _ = CrontabSchedule.objects.get_or_create(
                minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow,
                timezone=settings.TIME_ZONE,
            )
            task, created = PeriodicTask.objects.get_or_create(
                name=s.name,
                defaults={"task": s.task, "crontab": crontab, "enabled": s.enabled,
                          "expire_seconds": s.expires_seconds, "kwargs": json.dumps(s.kwargs),
                          "description": s.description},
            )
            if not created:
                task.task, task.crontab, task.expire_seconds = s.task, crontab, s.expires_seconds
                task.kwargs, task.description = json.dumps(s.kwargs), s.description
                task.save()
            changed.append(f"{'created' if created else 'updated'}: {s.name} ({s.crontab}, "
                           f"{'on' if task.enabled else 'off'})")
    return changed
