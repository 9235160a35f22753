"""``python -m course_lib.exercises NOTEBOOK [--solutions] [--scale ci]``: see :mod:`course_lib.exercises.runner`."""
import sys

from .runner import main

sys.exit(main())
