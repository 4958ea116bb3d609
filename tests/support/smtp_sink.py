"""A real SMTP server for authctl's tests (aiosmtpd), that the tests control.

    python3 smtp_sink.py PORT DIR

Listens on 127.0.0.1:PORT and writes every message it accepts to DIR as one .eml
file (written under a temporary name, then renamed, so a reader never sees half a
message). While DIR/REFUSE exists it refuses every message with a 451 (try again
later). Prints "ready" once it listens; SIGTERM stops it, SIGKILL kills it.
"""

import os
import signal
import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        if os.path.exists(os.path.join(self.directory, "REFUSE")):
            return "451 4.3.0 the test server refuses mail right now"
        name = "%d-%d.eml" % (time.time_ns(), os.getpid())
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.content)
        os.rename(tmp, os.path.join(self.directory, name))
        return "250 2.0.0 OK"


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port)
    controller.start()
    signal.signal(signal.SIGTERM, lambda *_: (controller.stop(), sys.exit(0)))
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
