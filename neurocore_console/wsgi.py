"""WSGI entry point (gunicorn neurocore_console.wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neurocore_console.settings")

application = get_wsgi_application()

# What is loaded now (Django, NeuroCore, the URL and settings objects) lives as
# long as the process: keep the garbage collector's full passes from walking it
# again and again, which otherwise adds tens of milliseconds to some requests.
gc.freeze()
