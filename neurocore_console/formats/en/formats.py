"""Django's own renderings of dates (admin columns, read-only fields): the console's format.

Django finds this module through ``FORMAT_MODULE_PATH`` ahead of its English
formats; what is not set here stays Django's.
"""

from runs.presentation import INSTANT_FORMAT

DATETIME_FORMAT = INSTANT_FORMAT
SHORT_DATETIME_FORMAT = INSTANT_FORMAT
DATE_FORMAT = "j M Y"
SHORT_DATE_FORMAT = "Y-m-d"
