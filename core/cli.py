"""How every command ends: a user's mistake is one line naming the fix (exit 1), Ctrl-C one line saying what
was kept (exit 130), SIGTERM (kill, timeout, a service manager's stop) the same as Ctrl-C (exit 143); never a
traceback for any. No torch here: the generator uses it too."""
import os
import signal
import sys
import threading

import config

# module -> its exceptions whose message is for the user (a module not imported cannot have raised them)
USER_ERRORS = {"core.data": ("DataError", "ImageError"), "core.checkpoint": ("CheckpointError",),
               "core.teacher": ("TeacherError",)}


def user_errors():
    found = [config.ConfigError]
    for module, names in USER_ERRORS.items():
        if module in sys.modules:
            found += [getattr(sys.modules[module], n) for n in names if hasattr(sys.modules[module], n)]
    return tuple(found)


TERMINATED = []  # the SIGTERM that stopped the command, once one has


def _terminate(signum, _frame):
    """SIGTERM stops the command as Ctrl-C does: what it was doing keeps what it keeps on Ctrl-C (a run's checkpoint,
    the teacher's readings so far) and says so."""
    TERMINATED.append(signum)
    raise KeyboardInterrupt


def _default_sigterm():
    if signal.getsignal(signal.SIGTERM) is _terminate:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run(main, errors=()):
    """Run a command's `main()` and exit with its return value (None: 0). `errors`: more exception types whose
    message is for the user."""
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints escaped, never as a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
        os.register_at_fork(after_in_child=_default_sigterm)  # a pool's workers end on SIGTERM (Pool.terminate)
    try:
        code = main()
        sys.stdout.flush()  # a reader that left early is found here, not as a traceback at exit
    except BrokenPipeError:
        _reader_gone()
    except SystemExit:  # --help, or a command's own exit: its output is flushed the same way
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _reader_gone()
        raise
    except KeyboardInterrupt as e:
        print(f"\n{'terminated (SIGTERM)' if TERMINATED else 'interrupted'}{': ' + str(e) if str(e) else ''}",
              file=sys.stderr)
        sys.exit(128 + signal.SIGTERM if TERMINATED else 130)
    except Exception as e:
        if isinstance(e, user_errors() + tuple(errors)):
            sys.exit(f"error: {e}")
        raise
    sys.exit(code)


def _reader_gone():
    """stdout's reader has gone (`predict.py F | head -n 3`): stop quietly, as other shell tools do; the rest of
    the output goes nowhere (Python's documented way: stdout pointed at the null device, exit 1)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)
