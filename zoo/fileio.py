"""File helpers shared by the packages that write results."""

import os


def _umask():
    try:  # Linux: read it without changing it (no window with another umask)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable way to read it is to set it
    os.umask(mask)
    return mask


def new_file_mode():
    """The permission bits a new file gets from `open()`: 0o666 without the umask.

    `tempfile.mkstemp` (used to write a file atomically) creates it 0600; a result
    file is given this mode before it is moved into place, so it reads like any
    other file of the user (0644 with the usual umask 022).
    """
    return 0o666 & ~_umask()
