from django.core.management.base import BaseCommand

from config.schedules import install_schedules


class Command(BaseCommand):
    help = "Install the periodic tasks into django-celery-beat (keeps staff's on/off choices)."

    def handle(self, *args, **options):
        for line in install_schedules():
            self.stdout.write(line)
