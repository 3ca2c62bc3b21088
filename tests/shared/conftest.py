"""The shared layer: what node and client both use (configuration, key files, refs, signed
node requests). Its fixtures, when it needs some, go here."""
