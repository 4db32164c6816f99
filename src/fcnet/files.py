"""Writing files so that a crash leaves the old version or the new one, never a torn one."""

import os
import tempfile

__all__ = ["atomic_write"]

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it onto ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
