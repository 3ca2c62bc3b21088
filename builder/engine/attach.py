"""Writing to a container's stdin through docker-py's attach socket, whichever way the engine is reached.

`attach_socket` returns a different object per transport: over a unix socket
a read-only SocketIO around the socket, over tcp with TLS the TLS socket
itself, over ssh (paramiko) the ssh channel. A build's script is written to
it and then only the sending half is closed: the daemon then closes the
container's stdin (StdinOnce), as an end of file, while the build's output
goes on through an attach of its own.
"""

import socket


class StdinAttach:
    """The node's end of an attach to a container's stdin."""

    def __init__(self, attached):
        self._attached = attached
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _socket(self):
        if isinstance(self._attached, socket.SocketIO):
            # Opened for reading only by docker-py; the bytes go to the socket underneath.
            return self._attached._sock
        return self._attached

    def send_all(self, data: bytes) -> None:
        self._socket().sendall(data)

    def end_input(self) -> None:
        """Close the sending half only: the container reads an end of file after what was sent.

        Over TLS this is a TCP half-close without TLS's close_notify, which
        is what the docker CLI does too; unwrapping the TLS first would wait
        for the daemon's close_notify, which comes only when the attach ends.
        """
        sock = self._socket()
        if hasattr(sock, "shutdown_write"):
            sock.shutdown_write()  # a paramiko channel
        else:
            sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Close the attach, and the socket under it; again is a no-op."""
        if self._closed:
            return
        self._closed = True
        sock = self._socket()
        if sock is not self._attached:
            self._attached.close()
        sock.close()
