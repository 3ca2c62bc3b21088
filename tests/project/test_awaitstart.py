"""scripts/lib/awaitstart.py, which the start scripts wait with: up only once the process
started answers with its own pid (and id), exited as soon as it ends, silent at the deadline."""

import socket
import subprocess
import sys
import time
import textwrap
from pathlib import Path

from harness.network import free_ports

AWAIT = Path(__file__).resolve().parents[2] / "scripts" / "lib" / "awaitstart.py"

# A status endpoint answering {"id": ID, "pid": <its own pid, or PID if given>} on PORT.
SERVER = textwrap.dedent("""
    import http.server, json, os, sys
    port, node_id, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) or os.getpid()
    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"id": node_id, "pid": pid}).encode()
            self.send_response(200); self.end_headers(); self.wfile.write(body)
        def log_message(self, *args): pass
    http.server.HTTPServer(("127.0.0.1", port), Status).serve_forever()
""")


def serving(port: int, node_id: int, pid: int = 0) -> subprocess.Popen:
    """A status server on `port`, once it accepts connections (a loaded machine starts Python slowly)."""
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(node_id), str(pid)])
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, "the status server did not start"
            time.sleep(0.05)


def await_start(*waits: tuple, seconds: float = 20, match_id: bool = True) -> list[str]:
    arguments = [sys.executable, str(AWAIT), "--seconds", str(seconds), *(["--match-id"] if match_id else [])]
    for name, url, pid in waits:
        arguments += ["--wait", str(name), url, str(pid)]
    return subprocess.run(arguments, capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()


def test_each_process_is_up_exited_or_silent_by_what_it_does():
    up_port, impostor_port, unused_port = free_ports(3)
    # The second answers for node 2, but with another process's pid: not the process started.
    servers = [serving(up_port, 1), serving(impostor_port, 2, pid=1)]
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    try:
        lines = await_start(
            (1, f"http://127.0.0.1:{up_port}/status", servers[0].pid),
            (2, f"http://127.0.0.1:{impostor_port}/status", servers[1].pid),
            (3, f"http://127.0.0.1:{unused_port}/status", ended.pid),
            seconds=2,
        )
    finally:
        for server in servers:
            server.kill()
            server.wait()

    assert sorted(lines) == ["exited 3", "silent 2", "up 1"]
    assert lines[-1] == "silent 2"  # only once the others are known, at the deadline


def test_an_answer_with_another_id_is_not_the_node_and_without_match_id_the_pid_is_enough():
    port, = free_ports(1)
    server = serving(port, 5)
    try:
        assert await_start((4, f"http://127.0.0.1:{port}/status", server.pid), seconds=2) == ["silent 4"]
        assert await_start(("client", f"http://127.0.0.1:{port}/status", server.pid), match_id=False) == ["up client"]
    finally:
        server.kill()
        server.wait()
