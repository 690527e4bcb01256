"""How every command ends: a user's mistake is one line naming the fix (exit 1), Ctrl-C one line saying what
was kept (exit 130); never a traceback for either."""
import signal
import sys

import config
from core.checkpoint import CheckpointError
from core.data import DataError, ImageError

USER_ERRORS = (config.ConfigError, DataError, ImageError, CheckpointError)


def ignore_interrupts():
    """For worker processes (generators, decoders): Ctrl-C reaches the whole process group, and the parent alone
    answers it; a worker that also raised would print its own traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run(main, errors=()):
    """Run a command's `main()` and exit with its return value (None: 0). `errors`: more exception types whose
    message is for the user (e.g. a teacher package missing)."""
    try:
        code = main()
    except USER_ERRORS + tuple(errors) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt as e:
        print(f"\ninterrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        sys.exit(130)
    sys.exit(code)
