"""What the node and the client share outside the protocol: the network's configuration and
key files (config, crypto), the client's signed requests to nodes (logrequest), bounded
downloads and server-sent events (transfergate, sse), git ref names (refs), commit statuses
posted to a forge (statuses), the configuration re-read on SIGHUP (reload), and the command
line of both processes: logging, dropped-frame logging, their listening port and the
interpreter they run in (cli, droplog, ports, project_python). `pbft/` never imports it."""
