"""What the node and the client share outside the protocol: the network's configuration and
key files (config, crypto), the client's signed requests to nodes (logrequest), bounded
downloads and server-sent events (transfergate, sse), git ref names (refs), commit statuses
posted to a forge (statuses), and the command line and dropped-frame logging of both
processes (cli, droplog). `pbft/` never imports it."""
