"""Files that survive a killed run: atomic writes, the temporary files of killed writers, appended table rows
(results.txt), and what kind of file a path is."""
import contextlib
import csv
import errno
import os
import re
import stat
import time

# results.txt: one row per epoch per run; char_acc / seq_acc are the validation accuracies (they choose the best
# checkpoint), test_* those on TEST_DIR (nan without one)
RESULT_COLUMNS = ["run", "epoch", "train_loss", "val_loss", "char_acc", "seq_acc", "test_char_acc", "test_seq_acc",
                  "lr", "seconds", "images_per_s"]


def file_kind(path):
    """What is at `path`, in words ("a directory", "a FIFO", ...), for messages."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return e.strerror or str(e)
    kinds = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


STALE_SECONDS = 30  # a temp file this old whose writer is gone is a killed run's leftover (removed by the next write)
# our temp names: .<target name>.<pid>-<8 hex>.tmp; also <file>.{pt,png,npz}.<pid>.tmp(.npz) of earlier versions
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$"
                   r"|^(?P<old>.+\.(pt|png|npz))\.(?P<oldpid>\d+)\.tmp(\.npz)?$")
_writing = set()  # temp paths this process is writing now (a killed earlier process may have had our pid)


def temp_path(path):
    """A temp name beside `path`, unique to this process and call: .<name>.<pid>-<random>.tmp (hidden, and no
    image or checkpoint extension, so no folder scan picks it up)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")


def _pid_alive(pid):
    if pid == os.getpid():
        return False  # ours, but not in _writing: left by an earlier process that had the same pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, OSError):  # PermissionError: a live process of another account: keep its file
        return True
    return True


def remove_stale_temps(folder, max_age=STALE_SECONDS):
    """Remove the temp files of killed writers from `folder`: names of our temp pattern, older than `max_age`
    seconds, whose process is gone. Files of live writers (another run on the same folder) are left alone.
    Returns the names removed; never raises."""
    removed = []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return removed
    now = time.time()
    for name in names:
        m = _TEMP.match(name)
        if not m:
            continue
        path = os.path.join(folder, name)
        pid = int(m["pid"] or m["oldpid"])
        try:
            old = now - os.lstat(path).st_mtime > max_age
            if old and path not in _writing and not _pid_alive(pid):
                os.remove(path)
                removed.append(name)
        except OSError:  # gone already, or not ours to remove
            pass
    return removed


def atomic_write(path, content, mode="wb", fsync=True, clean=True):
    """Write `path` all at once or not at all: `content` (bytes / str, or a callable given the open file, e.g.
    `lambda f: torch.save(obj, f)`) goes to a temp file beside it (temp_path: unique per process and call, so
    concurrent writers never collide), is flushed (and fsynced), then renamed over `path` (os.replace). On any
    exception (disk full, Ctrl-C) the temp file is removed and the exception raised; `path` keeps its old content.
    The folder is created if missing. `clean`: first remove killed runs' temp files from it (remove_stale_temps)."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    if clean:
        remove_stale_temps(folder)
    tmp = temp_path(path)
    _writing.add(tmp)
    try:
        with open(tmp, mode.replace("w", "x")) as f:  # x: never follow a planted file or link
            if callable(content):
                content(f)
            else:
                f.write(content)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    finally:
        _writing.discard(tmp)
    if fsync:  # the rename itself survives a power cut once the folder is synced
        with contextlib.suppress(OSError, AttributeError):
            fd = os.open(folder or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return path


def _is_header(fields, first):
    """Whether a table line's fields are a header: names only, the first one `first` (rows hold numbers)."""
    return len(fields) > 1 and fields[0] == first and all(re.fullmatch(r"[A-Za-z_]\w*", f) for f in fields)


def append_row(path, columns, row):
    """Append `row` (a dict with every name in `columns`) to the tab-separated table at `path` (results.txt).

    The header (`columns`) is written when the file is new or empty, and again (a new section, which
    read_results follows) when the file's last header names other columns, as after an upgrade. A last line
    without its newline (a killed writer) is ended first, so rows are never glued together. The row goes out in
    one write to a file opened for appending, and is fsynced."""
    header = "\t".join(columns)
    line = "\t".join(str(row[c]) for c in columns) + "\n"
    if os.path.exists(path) and not os.path.isfile(path):  # reading a FIFO would wait forever
        raise OSError(errno.EISDIR if os.path.isdir(path) else errno.EINVAL,
                      f"not a regular file ({file_kind(path)})", path)
    with open(path, "a+b") as f:
        f.seek(0)
        text = f.read().decode("utf-8", "replace")
        current = None
        for old in text.splitlines():
            fields = old.split("\t")
            if _is_header(fields, columns[0]):
                current = old
        prefix = "\n" if text and not text.endswith("\n") else ""
        if current != header:
            prefix += header + "\n"
        f.write((prefix + line).encode())
        f.flush()
        os.fsync(f.fileno())


def read_results(path, first=RESULT_COLUMNS[0]):
    """The rows of a results.txt as dicts. A header line met later starts a new section with its own columns
    (append_row writes one when the columns change); a row cut short has None for its missing columns."""
    rows, header = [], None
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for fields in csv.reader(f, delimiter="\t"):
            if not fields:
                continue
            if _is_header(fields, first):
                header = fields
            elif header:
                rows.append({k: (fields[i] if i < len(fields) else None) for i, k in enumerate(header)})
    return rows
