#!/usr/bin/env python3
"""A seed node for shoal's interop tests: the seed program's `Node`, in Python 3.

The seed (a Python 2 exercise, "file sharing with XML-RPC") is the protocol shoal speaks: a node
answers `query(name, history)` from its directory or asks the nodes it knows, one after another,
adding its own URL to the history and giving up when the history holds MAX_HISTORY_LENGTH URLs;
`hello(url)` teaches it a node; `fetch(name, secret)` queries and stores the answer.

This port keeps that behaviour, including the single-threaded server (a node cannot answer while
it is asking), and changes only what Python 3 and binary files need: files are read as bytes and
sent as a string when they are plain text, as base64 (`Binary`) otherwise, and stored as bytes.

Usage: seed_node.py DIR SECRET [PEER_URL...]
Binds 127.0.0.1 on a free port, prints one line `listening on http://127.0.0.1:PORT`, and serves.
"""

import sys
from os.path import abspath, isfile, join
from xmlrpc.client import Binary, Fault, ServerProxy
from xmlrpc.server import SimpleXMLRPCServer

MAX_HISTORY_LENGTH = 6
UNHANDLED = 100
ACCESS_DENIED = 200


class UnhandledQuery(Fault):
    """No node reached had the file."""

    def __init__(self, message="Could not handle the query"):
        super().__init__(UNHANDLED, message)


class AccessDenied(Fault):
    """A wrong secret, or a name outside the node's directory."""

    def __init__(self, message="Access denied"):
        super().__init__(ACCESS_DENIED, message)


def inside(directory, name):
    """True when the path `name` lies inside `directory` (so `dir/../x` does not)."""
    return abspath(name).startswith(join(abspath(directory), ""))


def as_content(data):
    """File bytes as an XML-RPC value: a str when they are text that XML carries unchanged."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Binary(data)
    for char in text:
        code = ord(char)
        if (code < 0x20 and char not in "\t\n") or code in (0xFFFE, 0xFFFF):
            return Binary(data)
    return text


def content_bytes(value):
    """The bytes a content value carries (the reverse of `as_content`)."""
    if isinstance(value, Binary):
        return value.data
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError("query answered with a %s, not content" % type(value).__name__)


class Node:
    """A node of the seed's network. Only the methods without a leading `_` are served."""

    def __init__(self, url, directory, secret, peers=()):
        self.url = url
        self.directory = directory
        self.secret = secret
        self.known = set(peers)

    def query(self, query, history=[]):
        """The file's content from this node or from the first node that has it."""
        try:
            return self._handle(query)
        except UnhandledQuery:
            history = history + [self.url]
            if len(history) >= MAX_HISTORY_LENGTH:
                raise
            return self._broadcast(query, history)

    def hello(self, other):
        """Learns the node at `other`."""
        self.known.add(other)
        return 0

    def fetch(self, query, secret):
        """Finds `query` in the network and stores it in this node's directory."""
        if secret != self.secret:
            raise AccessDenied()
        target = join(self.directory, query)
        if not inside(self.directory, target):
            raise AccessDenied()
        data = content_bytes(self.query(query))
        with open(target, "wb") as file:
            file.write(data)
        return 0

    def _handle(self, query):
        name = join(self.directory, query)
        if not inside(self.directory, name):
            raise AccessDenied()
        if not isfile(name):
            raise UnhandledQuery()
        with open(name, "rb") as file:
            return as_content(file.read())

    def _broadcast(self, query, history):
        for other in self.known.copy():
            try:
                return ServerProxy(other, allow_none=True).query(query, history)
            except Fault as fault:
                if fault.faultCode != UNHANDLED:
                    self.known.discard(other)
            except Exception:
                # The node is gone (or answered nonsense): forget it, as the seed does.
                self.known.discard(other)
        raise UnhandledQuery()


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: seed_node.py DIR SECRET [PEER_URL...]")
    directory, secret, peers = sys.argv[1], sys.argv[2], sys.argv[3:]
    server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)
    url = "http://127.0.0.1:%d" % server.server_address[1]
    server.register_instance(Node(url, directory, secret, peers))
    print("listening on " + url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
