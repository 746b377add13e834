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
    crontab: str  # "minute hour day_of_month month day_of_week"; "" with every_seconds
    expires_seconds: int
    enabled: bool = True
    kwargs: dict = field(default_factory=dict)
    description: str = ""
    every_seconds: int | None = None  # an interval instead of a crontab
    # What a user must hold to run this task now from the admin ("Run selected tasks"): the permissions of
    # the jobs it starts. Empty: no staff permission covers it, so only superusers may run it by hand.
    permissions: tuple[str, ...] = ()


SCHEDULES: list[Schedule] = [
    Schedule("Rescue stale jobs", "jobs.rescue_stale_jobs", "", 50,
             every_seconds=settings.SHOPBRIDGE["STALE_CHECK_SECONDS"],
             description="RUNNING jobs without a heartbeat for the stale window go back to the queue and resume "
                         "from their checkpoint (at most SHOPBRIDGE_MAX_RESCUES times), or fail.",
             # It re-queues (like a retry) or fails (like "Mark stale jobs as failed") other people's jobs.
             permissions=("jobs.retry_backgroundjob", "jobs.cancel_backgroundjob")),
]
# Names of schedules that were replaced: install_schedules removes them.
RETIRED = ["Fail stale jobs"]


def schedule_for_task(task: str) -> Schedule | None:
    """The registered schedule that runs ``task`` (a Celery task name), if any."""
    return next((s for s in SCHEDULES if s.task == task), None)


def register(*schedules: Schedule) -> None:
    """Apps add their schedules here (from their AppConfig.ready)."""
    known = {s.name for s in SCHEDULES}
    SCHEDULES.extend(s for s in schedules if s.name not in known)


def install_schedules() -> list[str]:
    """Create missing periodic tasks and update task/crontab of existing ones. ``enabled`` is only set
    on creation: a schedule staff switched on or off in the admin stays as they left it."""
    import json

    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    changed = []
    with transaction.atomic():
        for name in RETIRED:
            if PeriodicTask.objects.filter(name=name).delete()[0]:
                changed.append(f"removed: {name}")
        for s in SCHEDULES:
            when: dict = {"crontab": None, "interval": None}
            if s.every_seconds:
                when["interval"], _ = IntervalSchedule.objects.get_or_create(
                    every=s.every_seconds, period=IntervalSchedule.SECONDS)
                timing = f"every {s.every_seconds} s"
            else:
                minute, hour, dom, month, dow = s.crontab.split()
                when["crontab"], _ = CrontabSchedule.objects.get_or_create(
                    minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow,
                    timezone=settings.TIME_ZONE,
                )
                timing = s.crontab
            task, created = PeriodicTask.objects.get_or_create(
                name=s.name,
                defaults={"task": s.task, **when, "enabled": s.enabled,
                          "expire_seconds": s.expires_seconds, "kwargs": json.dumps(s.kwargs),
                          "description": s.description},
            )
            if not created:
                task.task, task.crontab, task.interval = s.task, when["crontab"], when["interval"]
                task.expire_seconds, task.kwargs, task.description = s.expires_seconds, json.dumps(s.kwargs), \
                    s.description
                task.save()
            changed.append(f"{'created' if created else 'updated'}: {s.name} ({timing}, "
                           f"{'on' if task.enabled else 'off'})")
    return changed
